#!/usr/bin/env node
// Generates the addon's N-API glue and its typed TypeScript interface from native/ops.yaml (the
// format is documented at the top of that file). Writes, only where the content changed:
//   native/generated/<unit>.inc, native/generated/ops.h, src/torch/generated/native-ops.ts, and
//   native/generated/kernels.inc (the CUDA sources of native/kernels/*.cu as string literals)
// Run by native/install.js (before node-gyp), `npm run build:native`, scripts/build-addon.sh,
// scripts/check-cuda-build.sh, `npm run build` (prebuild) and scripts/setup.sh. `--check` only validates
// the table.
'use strict';
const fs = require('fs');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const TABLE = path.join(__dirname, 'ops.yaml');
const CPP_OUT = path.join(__dirname, 'generated');
const TS_OUT = path.join(ROOT, 'src', 'torch', 'generated', 'native-ops.ts');

// ---------------------------------------------------------------- types

// Parameter types: C++ parameter type (hand-written functions), local variable type (glue), reader, TS type.
const PARAMS = {
  Tensor: { param: 'const at::Tensor&', local: 'const at::Tensor&', read: 'argTensor', ts: 'TensorHandle' },
  'Tensor?': { param: 'const c10::optional<at::Tensor>&', local: 'c10::optional<at::Tensor>', read: 'argOptTensor', ts: 'TensorHandle | null' },
  'Tensor[]': { param: 'const std::vector<at::Tensor>&', local: 'std::vector<at::Tensor>', read: 'argTensorList', ts: 'readonly TensorHandle[]' },
  'Tensor[]?': {
    param: 'const c10::optional<std::vector<at::Tensor>>&',
    local: 'c10::optional<std::vector<at::Tensor>>',
    read: 'argOptTensorList',
    ts: 'readonly TensorHandle[] | null',
  },
  'Tensor|Scalar': { param: 'const TensorOrScalar&', local: 'TensorOrScalar', read: 'argTensorOrScalar', ts: 'TensorHandle | Scalar' },
  int: { param: 'int64_t', local: 'int64_t', read: 'argInt', ts: 'number' },
  'int?': { param: 'c10::optional<int64_t>', local: 'c10::optional<int64_t>', read: 'argOptInt', ts: 'number | null' },
  'int[]': { param: 'const std::vector<int64_t>&', local: 'std::vector<int64_t>', read: 'argIntList', ts: 'readonly number[]' },
  'int[1]': { param: 'const std::vector<int64_t>&', local: 'std::vector<int64_t>', read: 'argIntList', ts: 'number | readonly number[]' },
  'int[]?': {
    param: 'const c10::optional<std::vector<int64_t>>&',
    local: 'c10::optional<std::vector<int64_t>>',
    read: 'argOptIntList',
    ts: 'readonly number[] | null',
  },
  'int[1]?': {
    param: 'const c10::optional<std::vector<int64_t>>&',
    local: 'c10::optional<std::vector<int64_t>>',
    read: 'argOptIntList',
    ts: 'number | readonly number[] | null',
  },
  float: { param: 'double', local: 'double', read: 'argDouble', ts: 'number' },
  'float?': { param: 'c10::optional<double>', local: 'c10::optional<double>', read: 'argOptDouble', ts: 'number | null' },
  bool: { param: 'bool', local: 'bool', read: 'argBool', ts: 'boolean' },
  'bool?': { param: 'c10::optional<bool>', local: 'c10::optional<bool>', read: 'argOptBool', ts: 'boolean | null' },
  Scalar: { param: 'const at::Scalar&', local: 'at::Scalar', read: 'argScalar', ts: 'Scalar' },
  'Scalar?': { param: 'const c10::optional<at::Scalar>&', local: 'c10::optional<at::Scalar>', read: 'argOptScalar', ts: 'Scalar | null' },
  str: { param: 'const std::string&', local: 'std::string', read: 'argString', ts: 'string' },
  ScalarType: { param: 'at::ScalarType', local: 'at::ScalarType', read: 'argDtype', ts: 'DType' },
  'ScalarType?': { param: 'c10::optional<at::ScalarType>', local: 'c10::optional<at::ScalarType>', read: 'argOptDtype', ts: 'DType | null' },
  'Device?': { param: 'c10::optional<at::Device>', local: 'c10::optional<at::Device>', read: 'argOptDevice', ts: 'Device | null' },
  'Generator?': {
    param: 'const c10::optional<at::Generator>&',
    local: 'c10::optional<at::Generator>',
    read: 'argOptGenerator',
    ts: 'NativeGenerator | null',
  },
  TypedArray: { param: 'Napi::TypedArray', local: 'Napi::TypedArray', read: 'argTypedArray', ts: 'TypedArray' },
  Object: { param: 'Napi::Object', local: 'Napi::Object', read: 'argObject', ts: 'object' },
  Handle: { param: 'uint64_t', local: 'uint64_t', read: 'argHandle', ts: 'TensorHandle' },
  Env: { param: 'Napi::Env', local: 'Napi::Env', read: null, ts: null },
};
const LITERAL_UNION = /^'[A-Za-z0-9_.-]*'(\|'[A-Za-z0-9_.-]*')*$/;

// Return types: C++ type of a hand-written function's result, conversion to JS (v: the C++ value), TS type.
const RETURNS = {
  Tensor: { cpp: 'at::Tensor', js: (v) => `wrap(info.Env(), ${v})`, ts: 'TensorHandle' },
  'Tensor?': { cpp: 'at::Tensor', js: (v) => `wrap(info.Env(), ${v})`, ts: 'TensorHandle | null' },
  'Tensor[]': { cpp: 'std::vector<at::Tensor>', js: (v) => `wrapList(info.Env(), ${v})`, ts: 'TensorHandle[]' },
  int: { cpp: 'int64_t', js: (v) => `Napi::Number::New(info.Env(), static_cast<double>(${v}))`, ts: 'number' },
  float: { cpp: 'double', js: (v) => `Napi::Number::New(info.Env(), static_cast<double>(${v}))`, ts: 'number' },
  bool: { cpp: 'bool', js: (v) => `Napi::Boolean::New(info.Env(), ${v})`, ts: 'boolean' },
  str: { cpp: 'std::string', js: (v) => `Napi::String::New(info.Env(), ${v})`, ts: 'string' },
  Scalar: { cpp: 'at::Scalar', js: (v) => `scalarToJs(info.Env(), ${v})`, ts: 'Scalar' },
  'int[]': { cpp: 'std::vector<int64_t>', js: (v) => `intListToJs(info.Env(), ${v})`, ts: 'number[]' },
  ScalarType: { cpp: 'at::ScalarType', js: (v) => `Napi::String::New(info.Env(), dtypeName(${v}))`, ts: 'DType' },
  Device: { cpp: 'at::Device', js: (v) => `Napi::String::New(info.Env(), (${v}).str())`, ts: 'Device' },
  Handle: { cpp: 'uint64_t', js: (v) => `Napi::BigInt::New(info.Env(), static_cast<uint64_t>(${v}))`, ts: 'TensorHandle' },
  Buffer: { cpp: 'at::Tensor', js: (v) => `bufferToJs(info.Env(), ${v})`, ts: 'ArrayBuffer' },
  SharedBuffer: { cpp: 'at::Tensor', js: (v) => `sharedBufferToJs(info.Env(), ${v})`, ts: 'ArrayBuffer' },
};
// Field types of {...} results: C++ member type, conversion, TS type.
const FIELDS = {
  int: { cpp: 'int64_t', js: (v) => `Napi::Number::New(env, static_cast<double>(${v}))`, ts: 'number' },
  float: { cpp: 'double', js: (v) => `Napi::Number::New(env, ${v})`, ts: 'number' },
  bool: { cpp: 'bool', js: (v) => `Napi::Boolean::New(env, ${v})`, ts: 'boolean' },
  str: { cpp: 'std::string', js: (v) => `Napi::String::New(env, ${v})`, ts: 'string' },
};

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED = new Set(['info', 'fn', 'result_', 'out_']);

// ---------------------------------------------------------------- parsing

class TableError extends Error {}

function splitTopLevel(s, sep) {
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if ('([{<'.includes(ch)) depth++;
    if (')]}>'.includes(ch)) depth--;
    if (ch === sep && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '') parts.push(cur);
  return parts.map((p) => p.trim());
}

function parseParam(text, where) {
  const m = /^(.+?)\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*(.+))?$/.exec(text);
  if (!m) throw new TableError(`${where}: cannot read parameter '${text}' (expected 'Type name' or 'Type name=default')`);
  const [, type, name, dflt] = m;
  if (!(type in PARAMS) && !LITERAL_UNION.test(type)) {
    throw new TableError(`${where}: unknown parameter type '${type}' (known: ${Object.keys(PARAMS).join(', ')}, or 'a'|'b')`);
  }
  if (RESERVED.has(name)) throw new TableError(`${where}: parameter name '${name}' is reserved by the generated glue`);
  const nullable = type.endsWith('?');
  if (dflt !== undefined) {
    if (nullable && dflt !== 'None') throw new TableError(`${where}: a nullable parameter's default must be None, got '${dflt}'`);
    if (!nullable && dflt === 'None') throw new TableError(`${where}: None is a default only for nullable types (${type}?)`);
    if (!nullable && /^(Tensor|Tensor\[\]|int\[\]|int\[1\]|Generator|Object|TypedArray|Handle|Env)$/.test(type)) {
      throw new TableError(`${where}: parameters of type ${type} cannot have a default`);
    }
  }
  // A literal union is a string checked at run time against its values (a JS caller can pass any string).
  const spec = LITERAL_UNION.test(type) ? { ...PARAMS.str, ts: type.split('|').join(' | '), values: type.split('|').map((v) => v.slice(1, -1)) } : PARAMS[type];
  return { type, name, default: dflt, spec };
}

function parseFields(text, where) {
  return splitTopLevel(text, ',').map((f) => {
    const m = /^(int|float|bool|str)(\?)?\s+([A-Za-z_][A-Za-z0-9_]*)$/.exec(f);
    if (!m) throw new TableError(`${where}: cannot read result field '${f}' (expected 'int|float|bool|str[?] name')`);
    return { type: m[1], optional: !!m[2], name: m[3] };
  });
}

function parseReturn(text, where) {
  if (text === '()') return { kind: 'void' };
  if (text.startsWith('{') && text.endsWith('}')) return { kind: 'struct', fields: parseFields(text.slice(1, -1), where) };
  if (text.startsWith('(') && text.endsWith(')')) {
    const items = splitTopLevel(text.slice(1, -1), ',');
    for (const t of items) if (!(t in RETURNS)) throw new TableError(`${where}: unknown tuple element type '${t}'`);
    return { kind: 'tuple', items };
  }
  if (!(text in RETURNS)) {
    throw new TableError(`${where}: unknown return type '${text}' (known: ${Object.keys(RETURNS).join(', ')}, (T, ...), {T name, ...}, ())`);
  }
  return { kind: 'simple', type: text };
}

function parseLine(line, unit, index) {
  let where = `native/ops.yaml: ${unit}[${index}]`;
  if (typeof line !== 'string') {
    throw new TableError(
      `${where}: expected one line 'name(params) -> Return [= expression]', got ${JSON.stringify(line)} ` +
        "(YAML read the line as something else: quote it when it contains ': ' or ' #')",
    );
  }
  const open = line.indexOf('(');
  const name = line.slice(0, open).trim();
  if (open < 0 || !IDENT.test(name)) throw new TableError(`${where}: a line starts with the op name and '(': '${line}'`);
  where = `native/ops.yaml: ${unit}.${name}`;
  let depth = 0;
  let close = -1;
  for (let i = open; i < line.length; i++) {
    if (line[i] === '(') depth++;
    if (line[i] === ')' && --depth === 0) {
      close = i;
      break;
    }
  }
  if (close < 0) throw new TableError(`${where}: unbalanced parentheses`);
  const rest = line.slice(close + 1).trim();
  const m = /^->\s*(.+?)(?:\s+=\s+(.+))?$/.exec(rest);
  if (!m) throw new TableError(`${where}: expected '-> Return' after the parameters, got '${rest}'`);
  const params = splitTopLevel(line.slice(open + 1, close), ',').map((p) => parseParam(p, where));
  const seen = new Set();
  let optionalSeen = false;
  for (const p of params) {
    if (seen.has(p.name)) throw new TableError(`${where}: parameter '${p.name}' appears twice`);
    seen.add(p.name);
    if (p.type === 'Env') continue;
    if (p.default !== undefined) optionalSeen = true;
    else if (optionalSeen) throw new TableError(`${where}: '${p.name}' has no default but follows a parameter with one`);
  }
  return { name, unit, params, ret: parseReturn(m[1].trim(), where), expr: m[2] ? m[2].trim() : null, line };
}

/** Reads and validates the table: { units: [{ name, ops }], ops }. */
function readTable(file = TABLE) {
  const YAML = require('yaml');
  const doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new TableError('native/ops.yaml: expected a map from translation unit to a list of ops');
  const units = [];
  const ops = [];
  const names = new Map();
  for (const [unit, lines] of Object.entries(doc)) {
    if (!/^[a-z][a-z0-9_]*$/.test(unit)) throw new TableError(`native/ops.yaml: unit '${unit}' must be a lower-case file name (native/<unit>.cc)`);
    if (!Array.isArray(lines)) throw new TableError(`native/ops.yaml: ${unit}: expected a list of ops`);
    const unitOps = lines.map((l, i) => parseLine(l, unit, i));
    for (const op of unitOps) {
      if (names.has(op.name)) throw new TableError(`native/ops.yaml: '${op.name}' is declared twice (${names.get(op.name)} and ${unit})`);
      names.set(op.name, unit);
    }
    units.push({ name: unit, ops: unitOps });
    ops.push(...unitOps);
  }
  return { units, ops };
}

// ---------------------------------------------------------------- C++

const cap = (s) => s[0].toUpperCase() + s.slice(1);
const structName = (op) => `${cap(op.name)}Result`;
const registerName = (unit) => `register${cap(unit)}`;

function cppReturnType(op) {
  const r = op.ret;
  if (r.kind === 'void') return 'void';
  if (r.kind === 'struct') return structName(op);
  if (r.kind === 'tuple') return `std::tuple<${r.items.map((t) => RETURNS[t].cpp).join(', ')}>`;
  return RETURNS[r.type].cpp;
}

/** Statements that return the JS value of the C++ value `value` (an expression, evaluated once). */
function emitReturn(op, value) {
  const r = op.ret;
  if (r.kind === 'void') return [`${value};`, 'return info.Env().Undefined();'];
  if (r.kind === 'struct') return [`return toJs(info.Env(), ${value});`];
  if (r.kind === 'tuple') {
    return [
      `auto result_ = ${value};`,
      `Napi::Array out_ = Napi::Array::New(info.Env(), ${r.items.length});`,
      ...r.items.map((t, k) => `out_.Set(${k}u, ${RETURNS[t].js(`std::get<${k}>(result_)`)});`),
      'return out_;',
    ];
  }
  return [`return ${RETURNS[r.type].js(value)};`];
}

function emitReads(op) {
  const lines = [];
  let js = 0;
  for (const p of op.params) {
    if (p.type === 'Env') {
      lines.push(`Napi::Env ${p.name} = info.Env();`);
      continue;
    }
    const i = js++;
    const read = p.spec.values ? `argEnum(info, ${i}, "${p.name}", {${p.spec.values.map((v) => `"${v}"`).join(', ')}})` : `${p.spec.read}(info, ${i})`;
    if (p.default !== undefined && p.default !== 'None') {
      const local = p.spec.local.replace(/^const |&$/g, '');
      lines.push(`${p.spec.local} ${p.name} = info.Length() > ${i} && !info[${i}].IsUndefined() ? ${read} : ${local}(${p.default});`);
    } else {
      lines.push(`${p.spec.local} ${p.name} = ${read};`);
    }
  }
  return lines;
}

function emitOp(op) {
  const body = emitReads(op);
  if (op.expr === null) {
    const sig = `${cppReturnType(op)} (*fn)(${op.params.map((p) => p.spec.param).join(', ')})`;
    body.push(`constexpr ${sig} = &impl::${op.name};  // hand-written in native/${op.unit}.cc`);
    body.push(...emitReturn(op, `fn(${op.params.map((p) => p.name).join(', ')})`));
  } else {
    // Tensor|Scalar parameters: the expression is compiled once for the tensor and once for the scalar.
    const dispatched = op.params.filter((p) => p.type === 'Tensor|Scalar');
    if (dispatched.length === 0) {
      body.push(...emitReturn(op, op.expr));
    } else {
      let value = op.expr;
      for (const [k, p] of [...dispatched].reverse().entries()) {
        const inner = k === 0 && op.ret.kind === 'void' ? `${value};` : `return ${value};`;
        value = `dispatch(${p.name}, [&](const auto& ${p.name}) { ${inner} })`;
      }
      body.push(...emitReturn(op, value));
    }
  }
  return [
    `// ${op.line}`,
    `static Napi::Value op_${op.name}(const Napi::CallbackInfo& info) {`,
    '  try {',
    ...body.map((l) => `    ${l}`),
    '  } catch (const Napi::Error&) {',
    '    throw;',
    '  } catch (...) {',
    `    rethrowAsJs(info.Env(), "${op.name}");`,
    '  }',
    '}',
  ].join('\n');
}

const HEADER = (what) => `// Generated by native/gen-ops.js from native/ops.yaml: do not edit. ${what}\n`;

function unitInc(unit) {
  return [
    HEADER(`The glue of native/${unit.name}.cc, included at its end.`),
    'namespace semaim {',
    '',
    ...unit.ops.map((op) => emitOp(op) + '\n'),
    `void ${registerName(unit.name)}(Napi::Env env, Napi::Object exports) {`,
    ...unit.ops.map((op) => `  exports.Set("${op.name}", Napi::Function::New(env, op_${op.name}, "${op.name}"));`),
    '}',
    '',
    '}  // namespace semaim',
    '',
  ].join('\n');
}

function opsHeader(table) {
  const structs = table.ops
    .filter((op) => op.ret.kind === 'struct')
    .map((op) => {
      const n = structName(op);
      const f = op.ret.fields;
      return [
        `// ${op.name}()`,
        `struct ${n} {`,
        ...f.map((x) => `  ${x.optional ? `c10::optional<${FIELDS[x.type].cpp}>` : FIELDS[x.type].cpp} ${x.name};`),
        '};',
        `inline Napi::Value toJs(Napi::Env env, const ${n}& r) {`,
        '  Napi::Object o = Napi::Object::New(env);',
        ...f.map((x) =>
          x.optional
            ? `  if (r.${x.name}) o.Set("${x.name}", ${FIELDS[x.type].js(`*r.${x.name}`)});`
            : `  o.Set("${x.name}", ${FIELDS[x.type].js(`r.${x.name}`)});`,
        ),
        '  return o;',
        '}',
        '',
      ].join('\n');
    });
  return [
    HEADER('Included by common.h.'),
    '#pragma once',
    '',
    'namespace semaim {',
    '',
    ...structs,
    ...table.units.map((u) => `void ${registerName(u.name)}(Napi::Env env, Napi::Object exports);`),
    '',
    '// Exports every op of the table.',
    'inline void registerOps(Napi::Env env, Napi::Object exports) {',
    ...table.units.map((u) => `  ${registerName(u.name)}(env, exports);`),
    '}',
    '',
    '}  // namespace semaim',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- TypeScript

function tsReturn(op) {
  const r = op.ret;
  if (r.kind === 'void') return 'void';
  if (r.kind === 'tuple') return `[${r.items.map((t) => RETURNS[t].ts).join(', ')}]`;
  if (r.kind === 'struct') return `{ ${r.fields.map((f) => `${f.name}${f.optional ? '?' : ''}: ${FIELDS[f.type].ts}`).join('; ')} }`;
  return RETURNS[r.type].ts;
}

function tsFile(table) {
  const lines = [];
  for (const unit of table.units) {
    lines.push(`  // ---------------------------------------------------------------- native/${unit.name}.cc`);
    for (const op of unit.ops) {
      const params = op.params.filter((p) => p.type !== 'Env').map((p) => `${p.name}${p.default !== undefined ? '?' : ''}: ${p.spec.ts}`);
      lines.push(`  /** ${op.line.replace(/\*\//g, '* /')} */`);
      lines.push(`  readonly ${op.name}: (${params.join(', ')}) => ${tsReturn(op)};`);
    }
  }
  return [
    HEADER("The addon's functions, typed."),
    "import type { DType, Device, TypedArray } from '../dtype';",
    "import type { NativeGenerator, TensorHandle } from '../native';",
    '',
    '/**',
    ' * A number, boolean or BigInt the addon turns into a libtorch Scalar (integral numbers: integer',
    ' * scalars; a BigInt must be a safe integer, it is never read as a tensor handle).',
    ' */',
    'export type Scalar = number | boolean | bigint;',
    '',
    '/** Every function of the native addon, one per line of native/ops.yaml. */',
    'export interface NativeOps {',
    ...lines,
    '}',
    '',
    '/** The names of NativeOps, in table order. */',
    `export const nativeOpNames: readonly (keyof NativeOps)[] = [`,
    ...table.ops.map((op) => `  '${op.name}',`),
    '];',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- CUDA kernel sources

// native/kernels/<name>.cu as C++ raw string literals (kKernelSource_<name>), for NVRTC at run time
// (native/fused.cc). The sources stay plain .cu files so that nvcc and the CPU emulator read them too.
const KERNEL_DIR = path.join(__dirname, 'kernels');
const KERNEL_DELIMITER = 'SEMAIM_CU';
function kernelSources() {
  const files = fs.existsSync(KERNEL_DIR)
    ? fs
        .readdirSync(KERNEL_DIR)
        .filter((f) => f.endsWith('.cu'))
        .sort()
    : [];
  const lines = [
    '// Generated by native/gen-ops.js from native/kernels/*.cu: do not edit. The CUDA sources NVRTC compiles at run time.',
    '#pragma once',
    '',
    'namespace semaim {',
    '',
  ];
  for (const f of files) {
    const name = f.slice(0, -3);
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new TableError(`native/kernels/${f}: the name must be a lower-case identifier`);
    const text = fs.readFileSync(path.join(KERNEL_DIR, f), 'utf8');
    if (text.includes(`)${KERNEL_DELIMITER}"`)) throw new TableError(`native/kernels/${f} contains the raw-string delimiter )${KERNEL_DELIMITER}"`);
    lines.push(`static const char* const kKernelSource_${name} = R"${KERNEL_DELIMITER}(${text})${KERNEL_DELIMITER}";`, '');
  }
  lines.push('}  // namespace semaim', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------- checks and output

/** Every unit must be a source of the addon that includes its glue. */
function checkUnits(table) {
  const gyp = fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8');
  for (const u of table.units) {
    const cc = path.join(__dirname, `${u.name}.cc`);
    if (!fs.existsSync(cc)) throw new TableError(`native/ops.yaml: unit '${u.name}' has no native/${u.name}.cc`);
    if (!fs.readFileSync(cc, 'utf8').includes(`#include "generated/${u.name}.inc"`)) {
      throw new TableError(`native/${u.name}.cc must end with #include "generated/${u.name}.inc" (its glue from native/ops.yaml)`);
    }
    if (!gyp.includes(`"native/${u.name}.cc"`)) throw new TableError(`binding.gyp: native/${u.name}.cc is not among the sources`);
  }
}

function writeIfChanged(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text) return false;
  fs.writeFileSync(file, text);
  return true;
}

function main() {
  let table;
  try {
    table = readTable();
    checkUnits(table);
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    console.error(`gen-ops: ${e.message}`);
    process.exit(1);
  }
  if (process.argv.includes('--check')) return;
  const outputs = [
    ...table.units.map((u) => [path.join(CPP_OUT, `${u.name}.inc`), () => unitInc(u)]),
    [path.join(CPP_OUT, 'ops.h'), () => opsHeader(table)],
    [path.join(CPP_OUT, 'kernels.inc'), () => kernelSources()],
    [TS_OUT, () => tsFile(table)],
  ];
  const changed = outputs.filter(([f, text]) => writeIfChanged(f, text())).map(([f]) => path.relative(ROOT, f));
  if (changed.length) console.error(`gen-ops: ${table.ops.length} ops; wrote ${changed.join(', ')}`);
}

module.exports = { readTable };
if (require.main === module) main();
