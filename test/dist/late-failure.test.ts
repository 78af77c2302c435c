// A rank that fails after the start (src/dist/late-failure.ts): the others see only that its connection
// closed, and its output is on its own machine. It posts its error at the store before it closes its
// backend, and the others stop with `rank R of N failed: <its message>`; rank 0, whose process serves
// the store, keeps it up until they have read it. Before, they reported only Gloo's "Connection closed
// by peer ... see that rank's output".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import { runWorkers, workerScript, type WorkerRun } from './helpers';
import { distError } from '../../src/dist/errors';
import { ownFailure, withFailedRanksReason } from '../../src/dist/late-failure';
import { AbortError } from '../../src/util/errors';
import { StoppedBySignal } from '../../src/run/signals';

const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';

const ended = (r: WorkerRun): { message: string; code: string } => {
  assert.equal(r.lines.length, 1, `rank ${r.rank} (exit ${r.code ?? r.signal}) printed ${JSON.stringify(r.lines)}; stderr:\n${r.stderr.slice(-2000)}`);
  return r.lines[0] as { message: string; code: string };
};

for (const [n, failing] of [[2, 0], [2, 1], [3, 1]] as const) {
  test(`${n} ranks, rank ${failing} fails mid-run (ENOSPC): every other rank stops naming it and its error, not only the closed connection`, { skip: gloo }, async () => {
    // with 3 ranks the error's message leaves its code out: the others' message adds it
    const apart = n === 3;
    const runs = await runWorkers(workerScript('late-failure-case'), n, [String(failing), 'barrier', ...(apart ? ['code-apart'] : [])], { timeoutMs: 30_000, env: { SEMAIM_DIST_TIMEOUT: '20' } });
    for (const r of runs) {
      assert.equal(r.signal, null, `rank ${r.rank} was killed (a hang):\n${r.stderr}`);
      const e = ended(r);
      if (r.rank === failing) {
        assert.match(e.message, /^cannot write checkpoints\/step-3\/model\.safetensors: (ENOSPC: )?no space left on device$/);
        continue;
      }
      const reason = apart ? 'no space left on device \\(ENOSPC\\)' : 'ENOSPC: no space left on device';
      assert.match(e.message, new RegExp(`^rank ${failing} of ${n} failed: cannot write checkpoints/step-3/model\\.safetensors: ${reason}$`), `rank ${r.rank}`);
      assert.equal(e.code, 'ERR_DIST_PEER');
    }
  });
}

// Backward throws on one rank (autograd's error, after the Reducer has started the last layer's all-reduces):
// the others wait inside backward for buckets that rank never starts, and its backend, with collectives in
// flight, cannot be closed. Its error is its own, posted for the others, who stop naming it; rank 0 stops
// waiting for them once they have read it (before 2026-12-06 rank 0's error was labelled a failure of the
// gradient all-reduce and not posted, and, posted, rank 0 kept the store 30 s for ranks that, blocked, never
// left, which then found the store gone and reported only the closed connection).
for (const [n, failing] of [[2, 0], [3, 0], [2, 1]] as const) {
  test(`${n} ranks, backward throws on rank ${failing} while the gradient all-reduce runs: every other rank stops naming it and autograd's error`, { skip: gloo || !dist.distBuildInfo().reducer }, async () => {
    const runs = await runWorkers(workerScript('late-failure-case'), n, [String(failing), 'backward'], { timeoutMs: 15_000, env: { SEMAIM_DIST_TIMEOUT: '60' } });
    const autograd = 'one of the variables needed for gradient computation has been modified by an inplace operation';
    for (const r of runs) {
      assert.equal(r.signal, null, `rank ${r.rank} was killed (a hang):\n${r.stderr}`);
      const e = ended(r);
      if (r.rank === failing) {
        assert.match(e.message, new RegExp(`^backward: ${autograd}`));
        continue;
      }
      assert.match(e.message, new RegExp(`^rank ${failing} of ${n} failed: backward: ${autograd}`), `rank ${r.rank}`);
      assert.equal(e.code, 'ERR_DIST_PEER');
    }
  });
}

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY = ['pretrain', '--model', 'vit_tiny', '--embed-dim', '64', '--depth', '2', '--num-heads', '2', '--decoder-depth', '1', '--img-size', '32',
  '--patch-size', '4', '--batch-size', '16', '--synthetic-size', '1280', '--epochs', '2', '--warmup-epochs', '1', '--checkpoint-every', '7',
  '--log-every', '1', '--threads', '1', '--num-workers', '0'];

/** A small full tmpfs (root only), or why not. */
function smallTmpfs(dir: string): string | null {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=200k', 'tmpfs', dir]);
  return r.status === 0 ? null : `cannot mount a tmpfs (needs root): ${r.stderr?.toString().trim()}`;
}

test("pretrain on 2 nodes whose node-0 --out-dir is full: node 1 stops with rank 0's write error, not only 'Connection closed by peer'", { skip: gloo }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-late-'));
  const full = join(root, 'full');
  const why = smallTmpfs(full);
  t.after(() => {
    if (!why) spawnSync('umount', [full]);
    rmSync(root, { recursive: true, force: true });
  });
  if (why) return t.skip(why);
  const port = await dist.freePort();
  const node = (rank: number, outDir: string) => new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, ...TINY, '--nnodes', '2', '--node-rank', String(rank), '--master-port', String(port), '--out-dir', outDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SEMAIM_NO_SPACE_CHECK: '1', SEMAIM_DIST_TIMEOUT: '30' },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
  const [n0, n1] = await Promise.all([node(0, join(full, 'run')), node(1, join(root, 'node1'))]);
  assert.equal(n0.code, 1, n0.out);
  assert.match(n0.out, /semaim: cannot write .*model\.safetensors: ENOSPC/, n0.out);
  assert.equal(n1.code, 1, n1.out);
  assert.match(n1.out, /\[rank 1\] semaim: rank 0 of 2 failed: cannot write .*model\.safetensors: ENOSPC/, n1.out);

  // one machine (--nproc-per-node 2): rank 0, waiting for rank 1 to read its error, is not killed by the
  // launcher's SIGTERM when rank 1 exits first; it prints its error, and the launcher names it
  rmSync(join(full, 'run'), { recursive: true, force: true });
  const one = spawnSync(process.execPath, [CLI, ...TINY, '--nproc-per-node', '2', '--out-dir', join(full, 'run')], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, SEMAIM_NO_SPACE_CHECK: '1', SEMAIM_DIST_TIMEOUT: '30' },
  });
  assert.equal(one.status, 1, one.stderr);
  assert.match(one.stderr, /^semaim: cannot write .*model\.safetensors: ENOSPC/m, one.stderr);
  assert.match(one.stderr, /\[rank 1\] semaim: rank 0 of 2 failed: cannot write/, one.stderr);
  assert.match(one.stderr, /launch: rank 0 \(node 0, local rank 0, pid \d+\) exited with code 1/, one.stderr);
});

test("ownFailure: this rank's own error is posted with its code; another rank's (a DistError), a stop and nothing are not", () => {
  const describe = (e: unknown) => `described: ${(e as Error).message}`;
  assert.deepEqual(ownFailure(Object.assign(new Error('cannot write'), { code: 'ENOSPC' }), describe), { message: 'described: cannot write', code: 'ENOSPC' });
  assert.deepEqual(ownFailure(Object.assign(new Error('bad'), { code: 7 }), describe), { message: 'described: bad' });
  assert.equal(ownFailure(distError('allReduce', 1, 2, 'gloo', 'Connection closed by peer'), describe), null);
  assert.equal(ownFailure(new AbortError(), describe), null);
  assert.equal(ownFailure(new StoppedBySignal('stopped by SIGTERM', 'SIGTERM'), describe), null);
  assert.equal(ownFailure(undefined, describe), null);
});

test("withFailedRanksReason: a collective that lost its peer (ERR_DIST_PEER or ERR_DIST) becomes `rank R of N failed: <its reason>`; a timeout, another error or a store gone stay as they were", async () => {
  const posted = { rank: 0, message: 'cannot open the shard', code: 'EIO' };
  const group = (late: () => Promise<unknown>) => ({ rank: 2, worldSize: 3, lateFailure: late }) as unknown as dist.ProcessGroup;
  const withReason = group(async () => posted);
  for (const message of ['Connection closed by peer', 'unhandled gloo error']) {
    const lost = distError('allReduce', 2, 3, 'gloo', message);
    const e = (await withFailedRanksReason(withReason, lost)) as dist.DistError;
    assert.equal(e.message, 'rank 0 of 3 failed: cannot open the shard (EIO)');
    assert.deepEqual([e.code, e.op, e.rank, e.worldSize, e.cause], ['ERR_DIST_PEER', 'allReduce', 2, 3, lost], message);
  }
  const named = group(async () => ({ rank: 1, message: 'ENOSPC: no space left on device', code: 'ENOSPC' }));
  assert.equal(((await withFailedRanksReason(named, distError('barrier', 2, 3, 'gloo', 'EOF'))) as Error).message, 'rank 1 of 3 failed: ENOSPC: no space left on device');
  const timeout = distError('allReduce', 2, 3, 'gloo', 'Timed out waiting 1000ms');
  assert.equal(await withFailedRanksReason(withReason, timeout), timeout);
  const own = new Error('Connection closed by peer');
  assert.equal(await withFailedRanksReason(withReason, own), own);
  const lost = distError('allReduce', 2, 3, 'gloo', 'Connection closed by peer');
  assert.equal(await withFailedRanksReason(group(async () => null), lost), lost);
  assert.equal(await withFailedRanksReason(group(() => Promise.reject(new Error('store gone'))), lost), lost);
});
