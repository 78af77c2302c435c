// A process group on libtorch's c10d (native/dist.cc): the rendezvous, the collectives, and the
// process-wide default group that `rank()`, `worldSize()` and `isDistributed()` describe.
//
// Collectives run in the background (Gloo's threads, NCCL's streams). The Promise forms wait for them
// on a libuv pool thread, so timers, signals and I/O go on meanwhile; the *Sync forms block the main
// thread (for short collectives inside a synchronous step). Errors are Errors with .code
// ERR_DIST_PEER (another rank died or closed its connection), ERR_DIST_START (another rank could not
// start: a bad option or path on its machine), ERR_DIST_TIMEOUT or ERR_DIST, and
// .op, .rank, .worldSize.
import type { Device, Tensor } from '../torch';
import * as torch from '../torch';
import { wrap } from '../torch/tensor';
import type { TensorHandle } from '../torch/native';
import { distBuildInfo, distNative, NativeProcessGroup, NativeReduceOp } from './native-dist';
import { DistEnv, isLoopback, readDistEnv } from './env';

/** The c10d backend of a process group: 'gloo' (CPU tensors) or 'nccl' (CUDA tensors, one GPU per rank). */
export type Backend = 'gloo' | 'nccl';
/** How a reduction combines the ranks' tensors: 'sum', 'avg' (sum / world size; floating tensors), 'max', 'min' or 'product'. Like torch.distributed.ReduceOp. */
export type ReduceOp = NativeReduceOp;

/** torch.distributed's default: long enough for a slow checkpoint write on another rank. */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * The default collective and rendezvous timeout: SEMAIM_DIST_TIMEOUT (seconds) where set, e.g. shorter
 * so that a rank that never starts (a wrong WORLD_SIZE) is reported in a minute, not in 30.
 */
export function defaultTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SEMAIM_DIST_TIMEOUT;
  if (v === undefined || v === '') return DEFAULT_TIMEOUT_MS;
  if (!/^[1-9]\d{0,6}$/.test(v.trim())) throw new Error(`SEMAIM_DIST_TIMEOUT must be a whole number of seconds (1 to 9999999), got '${v}'`);
  return Number(v.trim()) * 1000;
}

/** Options of {@link initProcessGroup} and `ProcessGroup.create`: backend, device, placement (default: torchrun's environment variables) and timeout. */
export interface InitOptions {
  /** 'auto' (default): NCCL for a CUDA device, Gloo otherwise. */
  backend?: Backend | 'auto';
  /** The device this process trains on; with NCCL it must be CUDA (default cuda:<localRank>). */
  device?: Device;
  /** Explicit placement; each defaults to the torchrun environment variable. */
  rank?: number;
  worldSize?: number;
  localRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Rendezvous and default per-collective timeout. */
  timeoutMs?: number;
  /** Gloo's worker threads per process (c10d's default: 2). */
  glooThreads?: number;
  /** Where torchrun's variables and SEMAIM_DIST_TIMEOUT are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** What a rank that failed later in the run posted for the others ({@link ProcessGroup.lateFailure}). */
export interface RankFailure {
  /** The rank that failed. */
  rank: number;
  /** Its error's message, as its own output shows it. */
  message: string;
  /** Its error's code (e.g. 'ENOSPC'), when it had one. */
  code?: string;
}

/** Options every collective of a {@link ProcessGroup} takes. */
export interface CollectiveOptions {
  /** Overrides the group's timeout for this collective. */
  timeoutMs?: number;
}

/** One collective in flight. Wait for it exactly once. */
export class Work {
  private done = false;

  constructor(private readonly group: ProcessGroup, private readonly id: number) {}

  /** Blocks until the collective completes; returns its output tensors (allGather; gather on its root) or []. */
  wait(): Tensor[] {
    this.consume();
    try {
      return this.group.native.wait(this.id).map(wrap);
    } catch (e) {
      this.group.markFailed();
      throw e;
    }
  }

  /** Waits off the main thread. */
  async waitAsync(): Promise<Tensor[]> {
    this.consume();
    try {
      return (await this.group.native.waitAsync(this.id)).map(wrap);
    } catch (e) {
      this.group.markFailed();
      throw e;
    }
  }

  private consume(): void {
    if (this.done) throw new Error('dist: this collective was already waited for');
    this.done = true;
  }
}

/**
 * A group of ranks on libtorch's c10d (Gloo or NCCL) with its collectives, like torch.distributed's process group.
 * Get one from {@link initProcessGroup} (the process-wide default) or `ProcessGroup.create`. The Promise forms
 * wait off the main thread, the *Sync forms block it; failures are DistErrors (see isDistError).
 */
export class ProcessGroup {
  /** The device whose tensors this group's collectives take ('cpu' for Gloo, a CUDA device for NCCL). */
  readonly device: Device;
  private failedOnce = false;

  private constructor(
    private readonly g: NativeProcessGroup,
    readonly rank: number,
    readonly worldSize: number,
    readonly localRank: number,
    readonly backend: Backend,
    device: Device,
    readonly timeoutMs: number,
  ) {
    this.device = device;
  }

  /** Rendezvous with the other ranks (rank 0 or torchrun's agent hosts the TCPStore) and creates the backend. */
  static async create(o: InitOptions = {}): Promise<ProcessGroup> {
    const p = placement(o);
    const g = new p.Native();
    await g.init(p.native);
    return new ProcessGroup(g, p.rank, p.worldSize, p.localRank, p.backend, p.device, p.timeoutMs);
  }

  /** The tensors' handles; NCCL's only where they are on this group's GPU (c10d's refusal names neither the op nor the device). */
  private handles(op: string, ts: Tensor | Tensor[]): TensorHandle[] {
    const list = Array.isArray(ts) ? ts : [ts];
    const off = this.backend === 'nccl' ? list.find((t) => t.device !== this.device) : undefined;
    if (off) throw new Error(`dist.${op}: the NCCL group of rank ${this.rank} takes tensors on ${this.device}, got one on ${off.device}`);
    return list.map((t) => t.h);
  }

  /** The native group, for the gradient reducer. */
  get native(): NativeProcessGroup {
    return this.g;
  }

  /** Whether a collective of this group has failed (the group is then of no further use). */
  get failed(): boolean {
    return this.failedOnce;
  }

  /** Records a failure seen outside the group's own collectives (e.g. a gradient all-reduce inside backward). */
  markFailed(): void {
    this.failedOnce = true;
  }

  // ------------------------------------------------------------ starting collectives

  /** Starts an in-place all-reduce (one collective per tensor, or one over all of them with coalesced). */
  startAllReduce(tensors: Tensor | Tensor[], op: ReduceOp = 'sum', o: CollectiveOptions & { coalesced?: boolean } = {}): Work {
    return new Work(this, this.g.allReduce(this.handles('allReduce', tensors), op, o.timeoutMs, !!o.coalesced));
  }

  startBroadcast(tensors: Tensor | Tensor[], root = 0, o: CollectiveOptions = {}): Work {
    return new Work(this, this.g.broadcast(this.handles('broadcast', tensors), root, o.timeoutMs));
  }

  startAllGather(t: Tensor, o: CollectiveOptions = {}): Work {
    return new Work(this, this.g.allGather(this.handles('allGather', t)[0], o.timeoutMs));
  }

  startGather(t: Tensor, root = 0, o: CollectiveOptions = {}): Work {
    return new Work(this, this.g.gather(this.handles('gather', t)[0], root, o.timeoutMs));
  }

  startBarrier(o: CollectiveOptions = {}): Work {
    return new Work(this, this.g.barrier(o.timeoutMs));
  }

  // ------------------------------------------------------------ collectives, awaited

  /** In place: every rank ends with the reduction ('avg' = sum / world size, floating tensors). */
  async allReduce(tensors: Tensor | Tensor[], op: ReduceOp = 'sum', o: CollectiveOptions = {}): Promise<void> {
    await this.startAllReduce(tensors, op, o).waitAsync();
  }

  /** As allReduce, but one collective over the flattened list (tensors of one dtype and device). */
  async allReduceCoalesced(tensors: Tensor[], op: ReduceOp = 'sum', o: CollectiveOptions = {}): Promise<void> {
    await this.startAllReduce(tensors, op, { ...o, coalesced: true }).waitAsync();
  }

  /** In place: every rank ends with root's values. */
  async broadcast(tensors: Tensor | Tensor[], root = 0, o: CollectiveOptions = {}): Promise<void> {
    await this.startBroadcast(tensors, root, o).waitAsync();
  }

  /** One tensor per rank, in rank order (every rank passes a tensor of the same shape and dtype). */
  async allGather(t: Tensor, o: CollectiveOptions = {}): Promise<Tensor[]> {
    return this.startAllGather(t, o).waitAsync();
  }

  /** On root: one tensor per rank, in rank order; [] on the other ranks (each passes a tensor of the same shape and dtype). */
  async gather(t: Tensor, root = 0, o: CollectiveOptions = {}): Promise<Tensor[]> {
    return this.startGather(t, root, o).waitAsync();
  }

  async barrier(o: CollectiveOptions = {}): Promise<void> {
    await this.startBarrier(o).waitAsync();
  }

  // ------------------------------------------------------------ collectives, blocking

  allReduceSync(tensors: Tensor | Tensor[], op: ReduceOp = 'sum', o: CollectiveOptions & { coalesced?: boolean } = {}): void {
    this.startAllReduce(tensors, op, o).wait();
  }

  broadcastSync(tensors: Tensor | Tensor[], root = 0, o: CollectiveOptions = {}): void {
    this.startBroadcast(tensors, root, o).wait();
  }

  allGatherSync(t: Tensor, o: CollectiveOptions = {}): Tensor[] {
    return this.startAllGather(t, o).wait();
  }

  barrierSync(o: CollectiveOptions = {}): void {
    this.startBarrier(o).wait();
  }

  /**
   * c10d's broadcast_coalesced (what DDP uses to start every rank from rank 0's weights): tensors
   * packed into flat buffers of up to bufferBytes, one broadcast per buffer. Blocking.
   */
  broadcastCoalesced(tensors: Tensor[], root = 0, bufferBytes = 250 * 2 ** 20): void {
    try {
      this.g.broadcastCoalesced(this.handles('broadcastCoalesced', tensors), root, bufferBytes);
    } catch (e) {
      this.markFailed();
      throw e;
    }
  }

  // ------------------------------------------------------------ small agreements

  /** Every rank's numbers averaged (e.g. losses for the log); one collective. */
  async averageNumbers(values: number[], o: CollectiveOptions = {}): Promise<number[]> {
    if (values.length === 0) return [];
    const t = torch.tensor(Float64Array.from(values), { device: this.device });
    try {
      await this.allReduce(t, 'avg', o);
      return Array.from(t.toFloat64Array());
    } finally {
      t.dispose();
    }
  }

  /**
   * Every rank's numbers summed elementwise, in the array's own type (counts and class indices are exact
   * below 2^53 in float64; rows that one rank fills and the others leave 0 add up exactly); one collective.
   */
  sumNumbers<T extends Float64Array | Float32Array>(values: T): T {
    const t = torch.tensor(values, { device: this.device });
    try {
      this.allReduceSync(t);
      return torch.scope(() => (values instanceof Float64Array ? t.cpu().toFloat64Array() : t.cpu().toFloat32Array())) as T;
    } finally {
      t.dispose();
    }
  }

  /** True on every rank when any rank passes true (e.g. a stop request seen by one rank). */
  async anyTrue(flag: boolean, o: CollectiveOptions = {}): Promise<boolean> {
    return (await this.maxOf(flag ? 1 : 0, o)) > 0;
  }

  /** The largest of every rank's `value`; one collective. */
  async maxOf(value: number, o: CollectiveOptions = {}): Promise<number> {
    const t = torch.tensor(Float64Array.of(value), { device: this.device });
    try {
      await this.allReduce(t, 'max', o);
      return t.item();
    } finally {
      t.dispose();
    }
  }

  /** Every rank's JSON-serialisable value, in rank order (e.g. the names of the files each rank skipped); two collectives. */
  async allGatherJson<T>(value: T, o: CollectiveOptions = {}): Promise<T[]> {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    const lengths = await this.allGatherNumbers(bytes.length, o);
    const padded = new Uint8Array(Math.max(...lengths));
    padded.set(bytes);
    const t = torch.tensor(padded, { device: this.device });
    let parts: Tensor[] = [];
    try {
      parts = await this.allGather(t, o);
      const text = new TextDecoder();
      return parts.map((p, r) => JSON.parse(text.decode(torch.scope(() => p.cpu().data() as Uint8Array).subarray(0, lengths[r]))) as T);
    } finally {
      t.dispose();
      for (const p of parts) p.dispose();
    }
  }

  private async allGatherNumbers(value: number, o: CollectiveOptions): Promise<number[]> {
    const t = torch.tensor(Float64Array.of(value), { device: this.device });
    let parts: Tensor[] = [];
    try {
      parts = await this.allGather(t, o);
      return parts.map((p) => torch.scope(() => p.cpu().item()));
    } finally {
      t.dispose();
      for (const p of parts) p.dispose();
    }
  }

  /**
   * The error another rank of the run posted (with {@link ProcessGroup.leave}) when it failed, or null
   * when none did or the store cannot be reached any more. For a collective that failed because another
   * rank went away: that rank's own reason, which is on its machine's output only.
   */
  async lateFailure(): Promise<RankFailure | null> {
    const text = await this.g.lateFailure();
    if (!text) return null;
    const { rank, error } = JSON.parse(text) as { rank: number; error: { message: string; code?: string } };
    return { rank, message: error.message, ...(error.code && { code: error.code }) };
  }

  /**
   * Leaves the run before shutdown(): posts this rank's own failure where the other ranks read it
   * ({@link ProcessGroup.lateFailure}; null: it did not fail), and that it left, then closes the backend,
   * so that the others' next collective fails at once. The store lives in rank 0's process: there, after
   * a failure (`waitMs` > 0), it stays up until every other rank has left or `waitMs` has passed. Never
   * throws: with the store gone the others report the closed connection alone.
   */
  async leave(failure: { message: string; code?: string } | null, waitMs = 0): Promise<void> {
    await this.g.leave(failure ? JSON.stringify(failure) : '', waitMs, this.failedOnce).catch(() => undefined);
  }

  /** Collectives started and not yet waited for. */
  get pending(): number {
    return this.g.pending();
  }

  /**
   * Releases the group (and, on the store host, the TCPStore). Idempotent. After a failure the group
   * is abandoned rather than destroyed (destroying waits for collectives that may never end); its
   * threads and sockets go with the process.
   */
  shutdown(): void {
    this.g.shutdown(this.failedOnce);
  }
}

/** Where this process sits in the run (torchrun's variables or explicit options) and the addon's init options. */
function placement(o: InitOptions) {
  const info = distBuildInfo();
  const Native = distNative.ProcessGroup;
  if (!info.c10d || !Native) {
    throw new Error('initProcessGroup: this build of the addon has no c10d (libtorch without distributed support); ' +
      'it can only train in one process');
  }
  const env = readDistEnv(o.env ?? process.env);
  const explicit = o.rank !== undefined && o.worldSize !== undefined;
  if (!env && !explicit) {
    throw new Error('initProcessGroup: not a distributed worker (RANK / WORLD_SIZE unset): start with ' +
      '`torchrun --nproc_per_node N --no_python node ...` or `--nproc-per-node N`, or pass rank and worldSize');
  }
  const rank = o.rank ?? (env as DistEnv).rank;
  const worldSize = o.worldSize ?? (env as DistEnv).worldSize;
  const localRank = o.localRank ?? env?.localRank ?? rank;
  const masterAddr = o.masterAddr ?? env?.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? env?.masterPort ?? 29500;
  const timeoutMs = o.timeoutMs ?? defaultTimeoutMs(o.env ?? process.env);
  const backend: Backend = o.backend === undefined || o.backend === 'auto' ? backendFor(o.device) : o.backend;
  if (!info[backend]) {
    throw new Error(`initProcessGroup: backend ${backend} is not built into the addon (built: ${builtBackends(info).join(', ') || 'none'})` +
      (backend === 'gloo' ? '; install libgloo-dev and rebuild (npm run build:native)' : ''));
  }
  let device: Device = 'cpu';
  let cudaIndex = 0;
  if (backend === 'nccl') {
    device = o.device && o.device.includes(':') ? o.device : (`cuda:${localRank}` as Device);
    cudaIndex = Number(device.split(':')[1]);
  }
  const native = {
    backend, rank, worldSize, masterAddr, masterPort, timeoutMs,
    storeHost: env?.agentStore ? false : rank === 0,
    storePrefix: env?.agentStore ? `/worker/attempt_${env.agentStore.restartCount}` : '',
    glooInterface: env?.glooInterface ?? '',
    glooHost: env?.glooInterface ? '' : isLoopback(masterAddr) ? '127.0.0.1' : '',
    glooThreads: o.glooThreads ?? 2,
    device: cudaIndex,
  };
  return { Native, native, rank, worldSize, localRank, backend, device, timeoutMs };
}

/**
 * Tells the other ranks of the run this worker belongs to that it cannot start (`why`: a bad option or
 * path on this machine), instead of joining: they stop at once with "rank R of N could not start: why"
 * rather than wait for it until the timeout. Rank 0 hosts the rendezvous, so there this returns only when
 * every other rank has read it, failed too, or the timeout has passed. Failures to tell are thrown.
 */
export async function reportStartFailure(why: string, o: InitOptions = {}): Promise<void> {
  const p = placement({ ...o, backend: distBuildInfo().gloo ? 'gloo' : 'nccl', device: undefined });
  const g = new p.Native();
  try {
    await g.init({ ...p.native, failure: why || 'failed' });
  } finally {
    g.shutdown(true);
  }
}

function builtBackends(info: { gloo: boolean; nccl: boolean }): Backend[] {
  return (['gloo', 'nccl'] as const).filter((b) => info[b]);
}

// ---------------------------------------------------------------- the process-wide default group

let defaultGroup: ProcessGroup | null = null;

/**
 * Joins the distributed run this process is a worker of (torchrun's variables, or explicit options) and
 * makes it the default group. Throws when called twice without destroyProcessGroup().
 */
export async function initProcessGroup(o: InitOptions = {}): Promise<ProcessGroup> {
  if (defaultGroup) throw new Error('initProcessGroup: already initialised (call destroyProcessGroup() first)');
  const g = await ProcessGroup.create(o);
  defaultGroup = g;
  return g;
}

/** The default group; throws when none was initialised. */
export function getProcessGroup(): ProcessGroup {
  if (!defaultGroup) throw new Error('no process group: call initProcessGroup() first');
  return defaultGroup;
}

/** The default group, or null in a single-process run. */
export function processGroupOrNull(): ProcessGroup | null {
  return defaultGroup;
}

/** The backend a group for `device` gets by default: NCCL for a CUDA device, Gloo otherwise. */
export function backendFor(device: Device | string | undefined): Backend {
  return device !== undefined && torch.deviceType(device) === 'cuda' ? 'nccl' : 'gloo';
}

/** The group when it has several ranks, else null (one process: nothing to exchange). */
export function severalRanks(group: ProcessGroup | null | undefined): ProcessGroup | null {
  return group && group.worldSize > 1 ? group : null;
}

/** A process's place in a group: rank and world size (rank 0 of 1 without a group). */
export function rankSlice(group: ProcessGroup | null): { rank: number; worldSize: number } {
  return { rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1 };
}

/** This process's rank (0 without a group). */
export function rank(): number {
  return defaultGroup ? defaultGroup.rank : 0;
}

/** The number of processes (1 without a group). */
export function worldSize(): number {
  return defaultGroup ? defaultGroup.worldSize : 1;
}

/** Whether this process trains together with others. */
export function isDistributed(): boolean {
  return defaultGroup !== null && defaultGroup.worldSize > 1;
}

/** Shuts the default group down (idempotent). */
export function destroyProcessGroup(): void {
  defaultGroup?.shutdown();
  defaultGroup = null;
}
