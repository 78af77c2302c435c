// Python pickles (protocols 2-5) read without running them: a global the pickle names is never
// resolved to code. What a call (REDUCE, NEWOBJ) of a global gives and what a persistent id stands
// for are the caller's: torch.save files (src/io/pytorch-file.ts) rebuild tensor references with them.

/** A Python global named by the pickle (never resolved to code). */
export class Global {
  constructor(readonly name: string) {}
}
/** The result of calling a global we do not know: kept as a record, not run. */
export class Opaque {
  state: unknown = undefined;
  /** Items set on it as on a dict, in order. */
  readonly items: [unknown, unknown][] = [];
  constructor(
    readonly global: string,
    readonly args: unknown[],
  ) {}
}

export interface PickleHooks {
  /** What calling `fn` (a Global, usually) with `args` gives; return an Opaque to record it only. */
  call(fn: unknown, args: unknown[]): unknown;
  /** What a persistent id stands for (torch.save: its tensor storages). */
  persistentLoad(pid: unknown): unknown;
}

/**
 * How much one unpickling may make. A ViT-L training checkpoint (1,564 tensors with its AdamW state,
 * args and a log of 2 M floats) makes 15 k objects and 2.05 M values: these bounds leave room for
 * ~100 k tensors and a log of ~15 M numbers, and keep the worst pickle's heap to ~0.5 GB (a Map is
 * ~200 bytes in V8, a value 8-24).
 */
export const PICKLE_LIMITS = { values: 16_000_000, objects: 1_000_000 };

/** Unpickles `data` (`label` names it in errors). Dicts become Maps, tuples and lists arrays. */
export function unpickle(data: Buffer, label: string, hooks: PickleHooks, limits = PICKLE_LIMITS): unknown {
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let at = 0;
  let values = 0;
  let objects = 0;
  // what the pickle makes is counted, so that a small data.pkl cannot fill the heap: 60 M one-byte
  // EMPTY_DICTs were 60 M Maps (~200 bytes each in V8) and node aborted at its heap limit
  const spend = (object: boolean): void => {
    if (++values > limits.values) throw new Error(`${label}: the pickle makes more than ${limits.values} values, more than a checkpoint's`);
    if (object && ++objects > limits.objects) {
      throw new Error(`${label}: the pickle makes more than ${limits.objects} objects (dicts, lists, strings, calls), more than a checkpoint's`);
    }
  };
  /** Pushes `v`; `made`: a value the pickle allocates now (not a number, not one taken from the stack or memo). */
  const push = (v: unknown, made = typeof v === 'string' || (typeof v === 'object' && v !== null)): void => {
    spend(made);
    stack.push(v);
  };
  const need = (n: number): void => {
    if (at + n > data.length) throw new Error(`${label}: the pickle ends inside an instruction`);
  };
  const u8 = (): number => (need(1), data[at++]);
  const u16 = (): number => (need(2), (at += 2), data.readUInt16LE(at - 2));
  const u32 = (): number => (need(4), (at += 4), data.readUInt32LE(at - 4));
  const bytes = (n: number): Buffer => {
    // a negative length (BINUNICODE8's and BINBYTES8's are read as signed) would step back: the same instructions forever
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${label}: the pickle gives a length of ${n}`);
    need(n);
    at += n;
    return data.subarray(at - n, at);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, at);
    if (end < 0) throw new Error(`${label}: the pickle ends inside a name`);
    const s = data.toString('utf8', at, end);
    at = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) throw new Error(`${label}: the pickle pops an empty stack`);
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) throw new Error(`${label}: the pickle has no mark to pop to`);
    return stack.splice(m);
  };
  const top = (): unknown => {
    if (!stack.length) throw new Error(`${label}: the pickle uses an empty stack`);
    return stack[stack.length - 1];
  };
  const setItems = (target: unknown, kv: unknown[]): void => {
    for (let i = 0; i + 1 < kv.length; i += 2) {
      if (target instanceof Map) target.set(kv[i], kv[i + 1]);
      else if (target instanceof Opaque) {
        spend(true);
        target.items.push([kv[i], kv[i + 1]]); // a dict subclass (defaultdict, ...)
      } else throw new Error(`${label}: the pickle sets items on something that is not a dict`);
    }
  };
  const long = (b: Buffer): number => {
    // beyond 2^53 no value is exact anyway; a LONG4 of megabytes built byte by byte takes quadratic time
    if (b.length > 16) return b[b.length - 1] & 0x80 ? -Infinity : Infinity;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return Number(v);
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80:
        u8();
        break; // PROTO
      case 0x95:
        bytes(8);
        break; // FRAME
      case 0x2e: // STOP
        return pop();
      case 0x28:
        spend(false);
        marks.push(stack.length);
        break; // MARK
      case 0x7d:
        push(new Map());
        break; // EMPTY_DICT
      case 0x5d:
        push([]);
        break; // EMPTY_LIST
      case 0x29:
        push([]);
        break; // EMPTY_TUPLE
      case 0x8f:
        push([]);
        break; // EMPTY_SET
      case 0x4e:
        push(null);
        break; // NONE
      case 0x88:
        push(true);
        break; // NEWTRUE
      case 0x89:
        push(false);
        break; // NEWFALSE
      case 0x4a:
        push(data.readInt32LE((need(4), (at += 4) - 4)));
        break; // BININT
      case 0x4b:
        push(u8());
        break; // BININT1
      case 0x4d:
        push(u16());
        break; // BININT2
      case 0x8a:
        push(long(bytes(u8())));
        break; // LONG1
      case 0x8b:
        push(long(bytes(u32())));
        break; // LONG4
      case 0x47:
        push(data.readDoubleBE((need(8), (at += 8) - 8)));
        break; // BINFLOAT
      case 0x58:
        push(bytes(u32()).toString('utf8'));
        break; // BINUNICODE
      case 0x8c:
        push(bytes(u8()).toString('utf8'));
        break; // SHORT_BINUNICODE
      case 0x8d:
        push(bytes(long(bytes(8))).toString('utf8'));
        break; // BINUNICODE8
      case 0x54:
        push(bytes(u32()).toString('latin1'));
        break; // BINSTRING
      case 0x55:
        push(bytes(u8()).toString('latin1'));
        break; // SHORT_BINSTRING
      case 0x42:
        push(Buffer.from(bytes(u32())));
        break; // BINBYTES
      case 0x43:
        push(Buffer.from(bytes(u8())));
        break; // SHORT_BINBYTES
      case 0x8e:
        push(Buffer.from(bytes(long(bytes(8)))));
        break; // BINBYTES8
      case 0x71:
        spend(false);
        memo.set(u8(), top());
        break; // BINPUT
      case 0x72:
        spend(false);
        memo.set(u32(), top());
        break; // LONG_BINPUT
      case 0x94:
        spend(false);
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw new Error(`${label}: the pickle refers to memo ${k}, never stored`);
        push(memo.get(k), false);
        break;
      }
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x32:
        push(top(), false);
        break; // DUP
      case 0x74:
        push(popMark());
        break; // TUPLE
      case 0x6c:
        push(popMark());
        break; // LIST
      case 0x85:
        push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        push([pop(), b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop(),
          b = pop();
        push([pop(), b, c]);
        break;
      } // TUPLE3
      case 0x64: {
        const m = new Map();
        setItems(m, popMark());
        push(m);
        break;
      } // DICT
      case 0x73: {
        const v = pop(),
          k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const kv = popMark();
        setItems(top(), kv);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        const l = top();
        if (Array.isArray(l)) l.push(v);
        break;
      } // APPEND
      case 0x65: {
        const vs = popMark();
        const l = top();
        if (Array.isArray(l)) for (const v of vs) l.push(v); // (not push(...vs): a spread of a few 100 k values overflows the call stack)
        break;
      } // APPENDS
      case 0x90:
        popMark();
        break; // ADDITEMS (sets are not needed)
      case 0x91:
        push(popMark());
        break; // FROZENSET
      case 0x63: {
        const mod = line();
        push(new Global(`${mod}.${line()}`));
        break;
      } // GLOBAL
      case 0x93: {
        const n = pop(),
          m = pop();
        // (as Python: names only; String() of a list nested 100000 deep overflowed the stack)
        if (typeof m !== 'string' || typeof n !== 'string') throw new Error(`${label}: the pickle names a global by something that is not a name`);
        push(new Global(`${m}.${n}`));
        break;
      } // STACK_GLOBAL
      case 0x51:
        push(hooks.persistentLoad(pop()));
        break; // BINPERSID
      case 0x52: {
        const args = pop();
        const fn = pop();
        push(hooks.call(fn, Array.isArray(args) ? args : []));
        break;
      } // REDUCE
      case 0x81: {
        const args = pop();
        const cls = pop();
        push(hooks.call(cls, Array.isArray(args) ? args : []));
        break;
      } // NEWOBJ
      case 0x92: {
        pop();
        const args = pop();
        const cls = pop();
        push(hooks.call(cls, Array.isArray(args) ? args : []));
        break;
      } // NEWOBJ_EX
      case 0x62: {
        const state = pop();
        const obj = top();
        if (obj instanceof Opaque) obj.state = state;
        break;
      } // BUILD
      default:
        throw new Error(
          `${label}: the pickle uses pickle opcode 0x${op.toString(16)} at byte ${at - 1}, which semaim does not read (torch.save does not write it)`,
        );
    }
  }
}
