// Process groups on c10d with Gloo, two processes on 127.0.0.1: every collective's values, and the
// errors a stuck or dead peer gives (clear, coded, naming the op and the rank; never a hang or an abort).
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dist from '../../src/dist';
import * as torch from '../../src/torch';
import { lineWith, runWorkers, workerScript } from './helpers';
import { distError, isCollectiveFailure } from '../../src/dist/errors';
import { distNative, type NativeGradReducer, type NativeInitOptions, type NativeProcessGroup } from '../../src/dist/native-dist';

const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo (install libgloo-dev and rebuild)';

test('distBuildInfo reports the backends of this build', () => {
  const info = dist.distBuildInfo();
  for (const k of ['c10d', 'gloo', 'nccl', 'reducer', 'glooFloat16', 'glooBFloat16'] as const) assert.equal(typeof info[k], 'boolean');
});

test("the addon's ProcessGroup and GradReducer have exactly the methods their hand-written TypeScript interfaces declare", { skip: gloo }, () => {
  // (native/dist.cc's classes are typed by hand in src/dist/native-dist.ts, not generated from ops.yaml)
  const groupMethods = ['init', 'allReduce', 'broadcast', 'allGather', 'gather', 'barrier', 'wait', 'waitAsync', 'pending', 'broadcastCoalesced', 'lateFailure', 'leave', 'shutdown'] as const satisfies readonly (keyof NativeProcessGroup)[];
  const reducerMethods = ['prepareForward', 'prepareBackward', 'buckets', 'compress', 'dispose'] as const satisfies readonly (keyof NativeGradReducer)[];
  // each list names every member of its interface too (a compile error otherwise)
  type Unlisted<I, L extends readonly unknown[]> = Exclude<keyof I, L[number]>;
  const complete: [Unlisted<NativeProcessGroup, typeof groupMethods> | Unlisted<NativeGradReducer, typeof reducerMethods>] extends [never] ? true : false = true;
  assert.ok(complete);
  const declared = { ProcessGroup: [...groupMethods].sort(), GradReducer: [...reducerMethods].sort() };
  for (const [name, methods] of Object.entries(declared)) {
    const cls = distNative[name as keyof typeof declared];
    if (!cls) continue; // (a libtorch without c10d's Reducer)
    const actual = Object.getOwnPropertyNames(cls.prototype).filter((k) => k !== 'constructor').sort();
    assert.deepEqual(actual, methods, name);
  }
});

test('gloo collectives across 2 processes: sum, avg, max, min, product, coalesced, broadcast, allGather, gather, barrier; maxOf, allGatherJson of other lengths, sumNumbers; a collective waited for twice', { skip: gloo }, async () => {
  const runs = await runWorkers(workerScript('collectives'), 2, ['ok']);
  for (const run of runs) {
    assert.equal(run.code, 0, `rank ${run.rank} failed:\n${run.stderr}`);
    const head = lineWith(run, 'backend');
    assert.deepEqual(head, { rank: run.rank, worldSize: 2, backend: 'gloo', isDistributed: true, rankFn: run.rank, worldSizeFn: 2 });
    const r = lineWith(run, 'sum');
    assert.deepEqual(r.sum, [3, 30]);
    assert.deepEqual(r.avg, [1.5, 1.5]);
    assert.deepEqual(r.max, [1, 0]);
    assert.deepEqual(r.coalesced, [[1.5, 2.5, 3.5], [1, 1, 0, 0.5]]);
    assert.deepEqual(r.broadcast0, [7, 8]);
    assert.deepEqual(r.broadcast1, [5]);
    assert.deepEqual(r.gathered, [[0, 0, 100], [1, 1, 101]]);
    // gather to rank 1: the rows of every rank there, nothing on rank 0
    const toRoot1 = [{ shape: [2, 2], v: [0, 0, 10, 20] }, { shape: [2, 2], v: [1, 2, 11, 20] }];
    assert.deepEqual(r.gatherToRoot1, run.rank === 1 ? toRoot1 : []);
    assert.deepEqual(r.stridedToRoot0, run.rank === 0 ? [[0, 10, 20], [1, 11, 21]] : [], 'a strided view is gathered as its elements');
    assert.deepEqual(r.gatheredSync, [{ shape: [1, 1], dtype: 'int64', v: [0] }, { shape: [1, 1], dtype: 'int64', v: [1] }]);
    assert.deepEqual(r.broadcastCoalesced, [[3, 3, 3, 3], [1, 1, 1, 1]]);
    assert.deepEqual(r.min, [0, 4]);
    assert.deepEqual(r.product, [6, 9]);
    assert.deepEqual(r.broadcastCoalescedFrom1, [[4, 4, 4], [6]]);
    assert.deepEqual(r.averageNumbers, [0.5, 10]);
    assert.deepEqual(r.anyTrue, [true, false]);
    assert.match(String(r.intAvg), /avg needs floating tensors, got int64/);
    assert.equal(r.pending, 0);
    assert.equal(r.maxOf, 8);
    assert.deepEqual(r.json, [{ a: 1 }, { b: 'x'.repeat(40), c: [1, 2] }]);
    assert.deepEqual(r.summed, { float32: true, v: [2, 4] });
    assert.equal(r.doubleWait, 'dist: this collective was already waited for');
  }
});

for (const scenario of ['timeout', 'timeout-sync']) test(`a rank that never joins an all-reduce (${scenario}): ERR_DIST_TIMEOUT naming the op and rank; the rank marks the group failed, gives it up and exits at once`, { skip: gloo }, async () => {
  const t0 = Date.now();
  const runs = await runWorkers(workerScript('collectives'), 2, [scenario]);
  const r0 = lineWith(runs[0], 'error');
  const e = r0.error as { code: string; op: string; rank: number; worldSize: number; message: string };
  assert.equal(e.code, 'ERR_DIST_TIMEOUT');
  assert.equal(e.op, 'allReduce');
  assert.equal(e.rank, 0);
  assert.equal(e.worldSize, 2);
  assert.match(e.message, /^dist\.allReduce failed on rank 0 of 2 \(gloo\): .*not every rank joined within 1500 ms/);
  assert.equal(r0.failed, true, 'the group is marked failed, so that shutdown abandons it');
  assert.ok(Number(r0.ms) < 5000, `timed out after ${r0.ms} ms, expected about 1500`);
  assert.equal(runs[0].code, 3, runs[0].stderr);
  const exitDelay = runs[0].ms - (Number(r0.exitAt) - t0);
  assert.ok(exitDelay < 2500, `rank 0 exited ${exitDelay} ms after giving the group up (rank 1 was still alive)`);
});

test('initProcessGroup outside a distributed run says how to start one', async () => {
  await assert.rejects(dist.initProcessGroup({ env: {} }), /not a distributed worker \(RANK \/ WORLD_SIZE unset\).*torchrun/);
  assert.equal(dist.rank(), 0);
  assert.equal(dist.worldSize(), 1);
  assert.equal(dist.isDistributed(), false);
});

test('the default timeout comes from the env given, as the placement does, not from process.env', { skip: gloo }, async () => {
  // SEMAIM_DIST_TIMEOUT was read from process.env while RANK, MASTER_PORT… came from the env passed
  const g = await dist.initProcessGroup({ rank: 0, worldSize: 1, masterPort: await dist.freePort(), env: { SEMAIM_DIST_TIMEOUT: '7' } });
  try {
    assert.equal(g.timeoutMs, 7000);
  } finally {
    dist.destroyProcessGroup();
  }
});

test('GLOO_SOCKET_IFNAME may list several interfaces, comma-separated, as torch.distributed takes it (a device on each)', { skip: gloo }, async () => {
  // before, the whole list was taken as one interface's name: "Unable to find address for: lo,lo"
  const runs = await runWorkers(workerScript('collectives'), 2, ['ok'], { env: { GLOO_SOCKET_IFNAME: 'lo,lo' } });
  for (const run of runs) {
    assert.equal(run.code, 0, `rank ${run.rank} failed:\n${run.stderr}`);
    assert.deepEqual(lineWith(run, 'sum').sum, [3, 30]);
  }
});

test('a world of one process works (collectives are identities)', { skip: gloo }, async () => {
  const port = await dist.freePort();
  const g = await dist.initProcessGroup({ rank: 0, worldSize: 1, masterPort: port, env: {} });
  try {
    const torch = await import('../../src/torch');
    const t = torch.tensor([2, 4], { dtype: 'float32' });
    await g.allReduce(t, 'avg');
    assert.deepEqual(Array.from(t.toFloat32Array()), [2, 4]);
    assert.equal(dist.isDistributed(), false);
    assert.equal(dist.worldSize(), 1);
    await assert.rejects(dist.initProcessGroup({ rank: 0, worldSize: 1, masterPort: port }), /already initialised/);
  } finally {
    dist.destroyProcessGroup();
  }
  assert.throws(() => g.barrierSync(), /dist\.barrier: the process group was shut down/);
});

test('readDistEnv: torchrun variables, agent store, and clear errors for bad values', () => {
  assert.equal(dist.readDistEnv({}), null);
  const e = dist.readDistEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '29400' });
  assert.deepEqual(e, { rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: 'node0', masterPort: 29400, agentStore: null, glooInterface: null });
  const a = dist.readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1', TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RESTART_COUNT: '2', GLOO_SOCKET_IFNAME: 'eth1' });
  assert.deepEqual(a?.agentStore, { restartCount: 2 });
  assert.equal(a?.glooInterface, 'eth1');
  assert.equal(a?.localRank, 0);
  // torchrun's standalone rendezvous says False: the workers start the store; a first attempt has no restart count
  const agent = (vars: Record<string, string>) => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1', ...vars })?.agentStore;
  assert.equal(agent({ TORCHELASTIC_USE_AGENT_STORE: 'False', TORCHELASTIC_RESTART_COUNT: '0' }), null);
  assert.deepEqual(agent({ TORCHELASTIC_USE_AGENT_STORE: 'True' }), { restartCount: 0 });
  assert.throws(() => dist.readDistEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1' }), /RANK=2 is not an integer in \[0, 1\]/);
  assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '2' }), /MASTER_ADDR, MASTER_PORT not set/);
  assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: 'two', MASTER_ADDR: 'h', MASTER_PORT: '1' }), /WORLD_SIZE=two/);
  assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '1e0', MASTER_ADDR: 'h', MASTER_PORT: '1' }), /WORLD_SIZE=1e0 is not an integer/);
  assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: 'h', MASTER_PORT: '0x10' }), /MASTER_PORT=0x10 is not an integer/);
  // RANK alone is no worker; LOCAL_RANK defaults to the rank among LOCAL_WORLD_SIZE; each bound is checked
  assert.equal(dist.readDistEnv({ RANK: '0' }), null);
  assert.equal(dist.isWorkerProcess({ RANK: '0' }), false);
  assert.equal(dist.readDistEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1' })?.localRank, 1);
  const base = { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1' };
  for (const [vars, message] of [
    [{ WORLD_SIZE: '0' }, /WORLD_SIZE=0 is not an integer in \[1, /],
    [{ LOCAL_WORLD_SIZE: '2', LOCAL_RANK: '2' }, /LOCAL_RANK=2 is not an integer in \[0, 1\]/],
    [{ LOCAL_WORLD_SIZE: '3' }, /LOCAL_WORLD_SIZE=3 is not an integer in \[1, 2\]/],
    [{ MASTER_PORT: '0' }, /MASTER_PORT=0 is not an integer in \[1, 65535\]/],
    [{ MASTER_ADDR: '' }, /MASTER_ADDR not set/],
  ] as const) assert.throws(() => dist.readDistEnv({ ...base, ...vars }), message, JSON.stringify(vars));
  for (const addr of ['localhost', '::1', '127.0.0.1', '127.0.1.1']) assert.ok(dist.isLoopback(addr), addr);
  for (const addr of ['10.0.0.1', 'node0', '::2']) assert.ok(!dist.isLoopback(addr), addr);
});

test('classifyDistMessage, distError and isDistError: a timeout, a lost peer and anything else get their codes; the error keeps the message, a hint and its cause', () => {
  for (const [message, code] of [
    ['[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 1800000ms for recv operation to complete', 'ERR_DIST_TIMEOUT'],
    ['Socket Timeout', 'ERR_DIST_TIMEOUT'],
    ['Connection reset by peer', 'ERR_DIST_PEER'],
    ['Connection closed by peer [127.0.0.1]:4242', 'ERR_DIST_PEER'],
    ['Broken pipe', 'ERR_DIST_PEER'],
    ['Connection refused', 'ERR_DIST_PEER'],
    ['Read error [127.0.0.1]:4242: EOF', 'ERR_DIST_PEER'],
    ['Tensors must be contiguous', 'ERR_DIST'],
  ] as const) assert.equal(dist.classifyDistMessage(message), code, message);
  const cause = new Error('Connection reset by peer');
  const e = distError('backward (gradient all-reduce)', 1, 2, 'gloo', cause);
  assert.match(e.message, /^dist\.backward \(gradient all-reduce\) failed on rank 1 of 2 \(gloo\): Connection reset by peer \[another rank exited/);
  assert.deepEqual([e.code, e.op, e.rank, e.worldSize, e.cause], ['ERR_DIST_PEER', 'backward (gradient all-reduce)', 1, 2, cause]);
  assert.match(distError('allReduce', 0, 2, 'nccl', 'Timed out').message, /: Timed out \[not every rank joined in time/);
  assert.equal(distError('allReduce', 0, 2, 'nccl', 'bad').code, 'ERR_DIST');
  // inside backward: the backend's errors are the all-reduce's, autograd's are the rank's own
  for (const m of ['Connection closed by peer [127.0.0.1]:4242', '[enforce fail at ../third_party/gloo/gloo/transport/tcp/pair.cc:446] op.preamble.length <= op.nbytes', 'NCCL error: unhandled system error'])
    assert.ok(isCollectiveFailure(m), m);
  assert.ok(!isCollectiveFailure('one of the variables needed for gradient computation has been modified by an inplace operation'));
  assert.ok(dist.isDistError(e));
  assert.ok(!dist.isDistError(Object.assign(new Error('x'), { code: 'ERR_DATA' })));
  assert.ok(!dist.isDistError({ code: 'ERR_DIST_PEER' }), 'not an Error');
});

test('without a group: getProcessGroup refuses, rankSlice is rank 0 of 1; severalRanks keeps only a group of 2 or more; a CUDA device gets NCCL, others Gloo', () => {
  assert.equal(dist.processGroupOrNull(), null);
  assert.throws(() => dist.getProcessGroup(), /no process group: call initProcessGroup\(\) first/);
  assert.deepEqual(dist.rankSlice(null), { rank: 0, worldSize: 1 });
  const group = (worldSize: number) => ({ rank: 0, worldSize }) as unknown as dist.ProcessGroup;
  assert.equal(dist.severalRanks(group(1)), null);
  assert.equal(dist.severalRanks(null), null);
  const two = group(2);
  assert.equal(dist.severalRanks(two), two);
  assert.deepEqual(['cuda', 'cuda:1', 'cpu', undefined].map(dist.backendFor), ['nccl', 'nccl', 'gloo', 'gloo']);
});

test('init refuses integer options the addon would narrow to another int (worldSize 2^32 + 1 was a world of one)', { skip: gloo }, async () => {
  const masterPort = await dist.freePort();
  const cases: [Partial<dist.InitOptions>, RegExp][] = [
    [{ worldSize: 2 ** 32 + 1 }, /option 'worldSize' must be in 1\.\.2147483647, got 4294967297/],
    [{ rank: 2 ** 32 }, /rank 4294967296 is not in \[0, worldSize = 1\)/],
    [{ masterPort: 2 ** 32 + masterPort }, /option 'masterPort' must be in 1\.\.65535/],
    [{ glooThreads: 2 ** 32 + 2 }, /option 'glooThreads' must be in 1\.\.2147483647/],
    [{ timeoutMs: 2 ** 64 }, /option 'timeoutMs' must be an integer/],
    [{ timeoutMs: 1500.5 }, /option 'timeoutMs' must be an integer/],
    [{ timeoutMs: 0 }, /timeoutMs must be positive/],
    [{ rank: 1 }, /rank 1 is not in \[0, worldSize = 1\)/],
    [{ rank: -1 }, /rank -1 is not in \[0, worldSize = 1\)/],
    [{ masterPort: 0 }, /option 'masterPort' must be in 1\.\.65535, got 0/],
    [{ glooThreads: 0 }, /option 'glooThreads' must be in 1\.\.2147483647, got 0/],
  ];
  for (const [o, message] of cases) {
    try {
      await assert.rejects(dist.initProcessGroup({ backend: 'gloo', rank: 0, worldSize: 1, masterPort, timeoutMs: 10_000, env: {}, ...o }), message);
    } finally {
      if (dist.processGroupOrNull()) dist.destroyProcessGroup();
    }
  }
});

test('shutdown() while init() runs: the group does not come alive when the rendezvous ends', { skip: gloo }, async () => {
  const g = new distNative.ProcessGroup!();
  const init = g.init({ backend: 'gloo', rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: await dist.freePort(), storeHost: true, timeoutMs: 10_000 });
  g.shutdown(false);
  try {
    await assert.rejects(init, /dist\.init failed on rank 0 of 1 \(gloo\): the process group was shut down while it was initialising/);
    assert.throws(() => g.barrier(), /the process group was shut down/);
  } finally {
    g.shutdown(false);
  }
});

test('SEMAIM_DIST_TIMEOUT shortens the wait for a rank that never starts (30 min by default); bad values are named', { skip: gloo }, async () => {
  assert.equal(dist.defaultTimeoutMs({}), dist.DEFAULT_TIMEOUT_MS);
  assert.equal(dist.defaultTimeoutMs({ SEMAIM_DIST_TIMEOUT: '90' }), 90_000);
  for (const bad of ['0', '1.5', '1e3', '-5', 'ten']) assert.throws(() => dist.defaultTimeoutMs({ SEMAIM_DIST_TIMEOUT: bad }), /SEMAIM_DIST_TIMEOUT must be a whole number of seconds/, bad);
  const saved = process.env.SEMAIM_DIST_TIMEOUT;
  process.env.SEMAIM_DIST_TIMEOUT = '2';
  const t0 = Date.now();
  try {
    await assert.rejects(dist.initProcessGroup({ rank: 0, worldSize: 2, masterPort: await dist.freePort() }), /not every rank joined within 2000 ms/);
    assert.ok(Date.now() - t0 < 30_000, `gave up after ${Date.now() - t0} ms`);
  } finally {
    if (saved === undefined) delete process.env.SEMAIM_DIST_TIMEOUT;
    else process.env.SEMAIM_DIST_TIMEOUT = saved;
  }
});

test('a rendezvous whose peer never comes fails within one timeout (the store waited for every worker, then Gloo again: 2-2.5×)', { skip: gloo }, async () => {
  const timeoutMs = 5000;
  const t0 = Date.now();
  await assert.rejects(
    dist.initProcessGroup({ backend: 'gloo', rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: await dist.freePort(), timeoutMs, env: {} }),
    /rank 1 of 2 never came to the rendezvous.*not every rank joined within 5000 ms/,
  );
  const waited = Date.now() - t0;
  // a bound on the deadline, not a speed target: waiting at the store first gave up after 11 s
  assert.ok(waited < 1.6 * timeoutMs, `the rendezvous gave up after ${waited} ms with a timeout of ${timeoutMs} ms`);
});

test("a process that comes as a rank the run already has (another run's worker on the same MASTER_PORT) is refused at the store and leaves that run alone", { skip: gloo }, async () => {
  const masterPort = await dist.freePort();
  const run = await bothRanksHere(20_000, masterPort);
  try {
    // the intruder in its own process: before the fix it joined and waited inside Gloo's connection,
    // past any timeout (killed here after 15 s)
    const env = { ...process.env, RANK: '1', LOCAL_RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(masterPort), SEMAIM_DIST_TIMEOUT: '5' };
    const intruder = spawnSync(process.execPath, [workerScript('collectives'), 'ok'], { env, encoding: 'utf8', timeout: 15_000 });
    assert.equal(intruder.status, 1, `the intruder was not refused (signal ${intruder.signal}):\n${intruder.stderr}`);
    assert.match(intruder.stderr, /dist\.init failed on rank 1 of 2 \(gloo\): another process has already come to the rendezvous at 127\.0\.0\.1:\d+ as rank 1 of 2: another run uses this MASTER_PORT/);
    assert.doesNotMatch(intruder.stderr, /is rank 0 \/ the store host .* running\?/);
    // the run it tried to join still works
    const sums = run.map((g) => torch.tensor([g.rank + 1], { dtype: 'float64' }));
    await Promise.all(run.map((g, i) => g.allReduce(sums[i], 'sum')));
    assert.deepEqual(sums.map((t) => t.item()), [3, 3]);
  } finally {
    for (const g of run) g.shutdown();
  }
});

/** Both ranks of a world of 2 in this process (rank 0 hosts the store at `masterPort`, a free port by default), on Gloo. */
async function bothRanksHere(timeoutMs = 20_000, masterPort?: number): Promise<dist.ProcessGroup[]> {
  const at = { backend: 'gloo' as const, worldSize: 2, masterAddr: '127.0.0.1', masterPort: masterPort ?? (await dist.freePort()), timeoutMs, env: {} };
  return Promise.all([dist.ProcessGroup.create({ ...at, rank: 0 }), dist.ProcessGroup.create({ ...at, rank: 1 })]);
}

test('Gloo sums float16 and bfloat16 exactly where distBuildInfo says it does; elsewhere the all-reduce fails with libtorch\'s reason', { skip: gloo }, async () => {
  const d = dist.distBuildInfo();
  // 1.13's Gloo dtype switch has float16 but no bfloat16 (added in 2.2); Debian's 2.14 builds Gloo without either
  if (torch.version().major < 2) assert.deepEqual([d.glooFloat16, d.glooBFloat16], [true, false]);
  for (const [dtype, sums] of [
    ['float16', d.glooFloat16],
    ['bfloat16', d.glooBFloat16],
  ] as const) {
    const run = await bothRanksHere(); // a group each: one whose collective failed is not reused
    const ts = run.map((_, r) => torch.tensor([1 + r, 0.5], { dtype }));
    try {
      const done = await Promise.allSettled(run.map((g, r) => g.allReduce(ts[r])));
      for (const [r, o] of done.entries()) {
        if (sums) {
          assert.equal(o.status, 'fulfilled', `${dtype}, rank ${r}: ${o.status === 'rejected' ? String(o.reason) : ''}`);
          assert.deepEqual(Array.from(ts[r].float().toFloat32Array()), [3, 1], `${dtype}, rank ${r}`);
        } else {
          assert.equal(o.status, 'rejected', `${dtype}, rank ${r}: distBuildInfo says Gloo cannot sum it`);
          assert.match(String((o as PromiseRejectedResult).reason), /Invalid scalar type/, `${dtype}, rank ${r}`);
        }
      }
    } finally {
      for (const g of run) g.shutdown();
      for (const t of ts) t.dispose();
    }
  }
});

const nativeInit = (o: Partial<NativeInitOptions> & { masterPort: number }): NativeInitOptions => ({
  backend: 'gloo', rank: 0, worldSize: 1, masterAddr: '127.0.0.1', storeHost: true, timeoutMs: 10_000, glooHost: '127.0.0.1', ...o,
});

test('the addon refuses a backend it does not know or lack, a device index beyond its type, a second init and an init after shutdown', { skip: gloo }, async () => {
  const g = new distNative.ProcessGroup!();
  try {
    const masterPort = await dist.freePort();
    await assert.rejects(async () => g.init(nativeInit({ masterPort, backend: 'mpi' as 'gloo' })), /unknown backend 'mpi' \(gloo or nccl\)/);
    if (!dist.distBuildInfo().nccl) await assert.rejects(async () => g.init(nativeInit({ masterPort, backend: 'nccl' })), /this build has no NCCL backend/);
    // the largest device index c10::DeviceIndex holds (127 or 32767 by libtorch version) is taken, one more is not
    const refused = await (async () => g.init(nativeInit({ masterPort, device: 2 ** 31 })))().then(() => '', (e: Error) => e.message);
    const max = Number(/option 'device' must be in 0\.\.(\d+), got 2147483648/.exec(refused)?.[1]);
    assert.ok(max >= 127, refused);
    await assert.rejects(async () => g.init(nativeInit({ masterPort, device: max + 1 })), new RegExp(`option 'device' must be in 0\\.\\.${max}, got ${max + 1}`));
    const init = g.init(nativeInit({ masterPort, device: max }));
    await assert.rejects(async () => g.init(nativeInit({ masterPort })), /this process group is already initialised/, 'while the first init runs');
    await init;
    g.shutdown(false);
    await assert.rejects(async () => g.init(nativeInit({ masterPort: await dist.freePort() })), /this process group was shut down; create a new one/);
  } finally {
    g.shutdown(false);
  }
});

test('a world of one refuses roots that are not ranks, an empty tensor list and a bufferBytes below 1', { skip: gloo }, async () => {
  const g = await dist.ProcessGroup.create({ backend: 'gloo', rank: 0, worldSize: 1, masterPort: await dist.freePort(), timeoutMs: 10_000, env: {} });
  try {
    const t = torch.tensor([1, 2], { dtype: 'float32' });
    for (const root of [1, -1]) {
      assert.throws(() => g.startBroadcast(t, root), new RegExp(`dist\\.broadcast: root ${root} is not a rank`));
      assert.throws(() => g.startGather(t, root), new RegExp(`dist\\.gather: root ${root} is not a rank`));
      assert.throws(() => g.broadcastCoalesced([t], root), new RegExp(`dist\\.broadcastCoalesced: root ${root} is not a rank`));
    }
    assert.throws(() => g.broadcastCoalesced([t], 0, 0), /bufferBytes must be positive/);
    assert.throws(() => g.native.allReduce([], 'sum'), /dist\.allReduce: no tensors/);
    assert.throws(() => g.native.broadcast([], 0), /dist\.broadcast: no tensors/);
    assert.equal(g.pending, 0);
  } finally {
    g.shutdown();
  }
});

test('avg on a group that was shut down throws and leaves the tensor as it was (it was divided by the world size first)', { skip: gloo }, async () => {
  const run = await bothRanksHere();
  for (const g of run) g.shutdown();
  const t = torch.tensor([2, 4], { dtype: 'float32' });
  assert.throws(() => run[0].startAllReduce(t, 'avg'), /the process group was shut down/);
  assert.deepEqual(Array.from(t.toFloat32Array()), [2, 4]);
});

test('shutdown() does not wait for a collective that may still run: one never waited for, or one whose wait failed (though the caller did not say so)', { skip: gloo }, async () => {
  const timeoutMs = 30_000;
  for (const how of ['never waited for', 'wait failed'] as const) {
    const [g0, g1] = await bothRanksHere(timeoutMs);
    try {
      // rank 1 never joins: rank 0's all-reduce runs until the group's timeout
      const id = g0.native.allReduce([torch.ones([3]).h], 'sum', 300, false);
      if (how === 'wait failed') assert.throws(() => g0.native.wait(id), (e: Error & { code?: string }) => e.code === 'ERR_DIST_TIMEOUT');
      const t0 = Date.now();
      g0.native.shutdown(false);
      // a bound far below the collective's timeout, not a speed target: destroying the backend waited for it
      assert.ok(Date.now() - t0 < timeoutMs / 3, `${how}: shutdown took ${Date.now() - t0} ms`);
    } finally {
      g0.native.shutdown(true);
      g1.shutdown();
    }
  }
});

test('a rank that cannot start is named by the ranks waiting at the rendezvous (ERR_DIST_START), and rank 0 keeps the store until every other rank has read it', { skip: gloo }, async () => {
  const timeoutMs = 20_000;
  const couldNotStart = (rank: number, size: number) => (e: Error & { code?: string; rank?: number }) =>
    e.code === 'ERR_DIST_START' && e.rank === rank && new RegExp(`^dist\\.init failed on rank ${rank} of ${size} \\(gloo\\): rank 1 of ${size} could not start: no data here$`).test(e.message);
  const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
  // rank 0 already waits (and has looked for the others) when rank 1 posts its failure
  {
    const at = { backend: 'gloo' as const, worldSize: 2, masterAddr: '127.0.0.1', masterPort: await dist.freePort(), timeoutMs, env: {} };
    const t0 = Date.now();
    const rank0 = dist.ProcessGroup.create({ ...at, rank: 0 });
    await sleep(300);
    await dist.reportStartFailure('no data here', { ...at, rank: 1 });
    await assert.rejects(rank0, couldNotStart(0, 2));
    assert.ok(Date.now() - t0 < timeoutMs / 2, `rank 0 gave up after ${Date.now() - t0} ms`);
  }
  // of 3: rank 0 has read rank 1's failure before rank 2 comes; it keeps the store for rank 2, then stops
  {
    const at = { backend: 'gloo' as const, worldSize: 3, masterAddr: '127.0.0.1', masterPort: await dist.freePort(), timeoutMs, env: {} };
    const t0 = Date.now();
    const rank0 = dist.ProcessGroup.create({ ...at, rank: 0 });
    const rank0Settled = rank0.then(() => 'joined', () => 'failed');
    await sleep(300);
    await dist.reportStartFailure('no data here', { ...at, rank: 1 });
    assert.equal(await Promise.race([rank0Settled, sleep(1000).then(() => 'waiting')]), 'waiting', 'rank 0 kept the store for rank 2');
    await assert.rejects(dist.ProcessGroup.create({ ...at, rank: 2 }), couldNotStart(2, 3));
    await assert.rejects(rank0, couldNotStart(0, 3));
    assert.ok(Date.now() - t0 < timeoutMs / 2, `rank 0 gave up after ${Date.now() - t0} ms`);
  }
});

test("lateFailure names another rank's posted failure, never this rank's own; rank 0 waits for no rank that has already left", { skip: gloo }, async () => {
  const timeoutMs = 20_000;
  const [g0, g1] = await bothRanksHere(timeoutMs);
  try {
    assert.equal(await g0.lateFailure(), null);
    await g1.leave({ message: 'disk full', code: 'ENOSPC' }, 0);
    const t0 = Date.now();
    await g0.leave({ message: 'out of memory' }, timeoutMs);
    // a bound far below the wait, not a speed target: rank 1 had posted that it left
    assert.ok(Date.now() - t0 < timeoutMs / 2, `rank 0 waited ${Date.now() - t0} ms for a rank that had left`);
    assert.deepEqual(await g0.lateFailure(), { rank: 1, message: 'disk full', code: 'ENOSPC' });
    assert.deepEqual(await g1.lateFailure(), { rank: 0, message: 'out of memory' });
  } finally {
    g1.shutdown();
    g0.shutdown();
  }
});

test('a collective whose peer closed its group fails with ERR_DIST_PEER, saying that another rank went away', { skip: gloo }, async () => {
  const [g0, g1] = await bothRanksHere();
  try {
    g1.shutdown();
    await assert.rejects(g0.allReduce(torch.ones([3]), 'sum'), (e: Error & { code?: string; op?: string; rank?: number }) =>
      e.code === 'ERR_DIST_PEER' && e.op === 'allReduce' && e.rank === 0 &&
      /^dist\.allReduce failed on rank 0 of 2 \(gloo\): .* \[another rank exited, was killed or closed the process group: see that rank's output\]$/.test(e.message));
    assert.equal(g0.failed, true);
  } finally {
    g0.shutdown();
  }
});
