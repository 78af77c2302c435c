// Data-parallel ranks stop together and start from the same state (src/dist/agree.ts, src/run/loop.ts):
// an AbortSignal aborted on one rank only stops every rank of a training run at the same step after a
// checkpoint, within about a second even with --log-every far away, and makes every rank of an
// evaluation (knn, linprobe, segprobe, embed) reject with an AbortError and write nothing, instead of
// leaving the others in a collective until the timeout; ranks whose loss scaler, position, carried loss
// window or random streams differ are refused before any step, naming what differs; a NaN loss on one
// rank stops all at the same step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import { stateDigest } from '../../src/io/checkpoint';
import { runWorkers, workerScript, type WorkerRun } from './helpers';
import { writeEncoder } from '../eval/helpers';

const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
const root = mkdtempSync(join(tmpdir(), 'semaim-stop-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const line = (r: WorkerRun): Record<string, unknown> => {
  assert.equal(r.lines.length, 1, `rank ${r.rank} (exit ${r.code ?? r.signal}) printed ${JSON.stringify(r.lines)}; stderr:\n${r.stderr.slice(-2000)}`);
  return r.lines[0];
};

test('pretrain: an AbortSignal aborted on rank 1 alone stops both ranks at the same step, after a checkpoint, long before the next log step', { skip: gloo }, async () => {
  const out = join(root, 'pretrain');
  const args = [
    '--dataset', 'synthetic', '--synthetic-size', '4000', '--img-size', '16', '--patch-size', '4', '--model', 'vit_tiny', '--embed-dim', '32',
    '--depth', '2', '--num-heads', '2', '--decoder-depth', '1', '--epochs', '1', '--warmup-epochs', '0.5', '--batch-size', '8',
    '--log-every', '1000', '--checkpoint-every', '1000', '--num-workers', '0', '--threads', '1', '--blur', 'false', '--out-dir', out,
  ];
  const runs = await runWorkers(workerScript('stop-case'), 2, ['pretrain', '1', ...args]);
  const [r0, r1] = runs.map(line);
  // rank 1 aborts after step 3; the run has 250 steps and logs at the end only. Before, the ranks
  // agreed on a stop only at log steps: both trained to the end and reported 'maxSteps'/'finished'.
  assert.equal(r0.stoppedBy, 'signal', JSON.stringify(r0));
  assert.equal(r1.stoppedBy, 'signal', JSON.stringify(r1));
  assert.equal(r0.steps, r1.steps, 'the same step on both ranks');
  assert.ok((r0.steps as number) < 250, `stopped at step ${r0.steps}, not at the end`);
  assert.ok(existsSync(join(out, 'checkpoints', `step-${String(r0.steps).padStart(8, '0')}`)), 'the checkpoint of the stop step');
});

test("Ctrl-C on node 1's launcher of a 2-node pretrain: node 1 says that the run stopped and where rank 0 wrote its checkpoint (it printed nothing)", { skip: gloo }, async () => {
  const port = await dist.freePort();
  const outs = [join(root, 'ctrl-c-node0'), join(root, 'ctrl-c-node1')];
  const args = [
    'pretrain', '--dataset', 'synthetic', '--synthetic-size', '4000', '--img-size', '16', '--patch-size', '4', '--model', 'vit_tiny',
    '--embed-dim', '32', '--depth', '2', '--num-heads', '2', '--decoder-depth', '1', '--epochs', '1', '--warmup-epochs', '0.5', '--batch-size', '8',
    '--log-every', '1', '--checkpoint-every', '1000', '--num-workers', '0', '--threads', '1', '--blur', 'false', '--nnodes', '2', '--master-port', String(port),
  ];
  const nodes = [0, 1].map((rank) => {
    const child = spawn(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), ...args, '--node-rank', String(rank), '--out-dir', outs[rank]], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SEMAIM_DIST_TIMEOUT: '30' },
    });
    const run = { out: '', exit: null as Promise<number | null> | null };
    child.stdout.on('data', (c: Buffer) => { run.out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { run.out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    run.exit = new Promise((resolve) => child.on('close', (code) => { clearTimeout(timer); resolve(code); }));
    return { child, run };
  });
  // the first steps are logged on node 0: then a Ctrl-C (SIGINT) to node 1's launcher alone
  while (!/\| loss /.test(nodes[0].run.out) && nodes[0].child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  nodes[1].child.kill('SIGINT');
  const [code0, code1] = await Promise.all(nodes.map((n) => n.run.exit));
  const [out0, out1] = nodes.map((n) => n.run.out);
  assert.equal(code1, 130, out1);
  assert.equal(code0, 130, out0);
  assert.match(out1, /\[rank 1\] SIGINT: stopping after this step and its checkpoint/, out1);
  const m = /\[rank 1\] stopped at step (\d+) on every rank: rank 0 \(node 0\) wrote the checkpoint, checkpoints\/(step-\d+) in its --out-dir/.exec(out1);
  assert.ok(m, out1);
  assert.equal(m[2], `step-${m[1].padStart(8, '0')}`);
  assert.ok(existsSync(join(outs[0], 'checkpoints', m[2])), `node 0 wrote ${m[2]}:\n${out0}`);
});

test('evaluations: an AbortSignal aborted on one rank makes every rank reject with an AbortError, and none writes its files', { skip: gloo }, async () => {
  const encoder = writeEncoder(root);
  // rank 1 aborts during the training features (knn), before the first probe step (linprobe), after its
  // first training batch (segprobe); rank 0 after its first batch (embed). Before, the other rank waited in
  // its next collective until the group's timeout (5 s here; 30 min by default) and failed with ERR_DIST_TIMEOUT.
  for (const [scenario, aborting] of [['knn', 1], ['linprobe', 1], ['segprobe', 1], ['embed', 0]] as const) {
    const out = join(root, scenario);
    const runs = await runWorkers(workerScript('stop-case'), 2, [scenario, String(aborting), encoder, out], { env: { STOP_CASE_TIMEOUT_MS: '5000' } });
    for (const r of runs) {
      const l = line(r);
      assert.equal(l.code, 'ERR_ABORTED', `${scenario}, rank ${r.rank}: ${JSON.stringify(l)}`);
      assert.equal(l.name, 'AbortError');
      if (r.rank !== aborting) assert.match(String(l.error), new RegExp(`aborted on another rank \\(this is rank ${r.rank} of 2\\)`));
    }
    // (embed makes the folder of its --out before the first image)
    assert.deepEqual(existsSync(out) ? readdirSync(out) : [], [], `${scenario}: no output`);
  }
});

const loopCase = (out: string, scenario: string, maxSteps: number, env: NodeJS.ProcessEnv = {}) =>
  runWorkers(workerScript('loop-case'), 2, [out, scenario, String(maxSteps)], { env });

function assertRefusedOnBoth(runs: WorkerRun[], ...expected: RegExp[]): void {
  for (const r of runs) {
    const l = line(r);
    assert.equal(l.code, 'ERR_DIST_MISMATCH', `rank ${r.rank}: ${JSON.stringify(l)}`);
    assert.match(String(l.error), /the 2 ranks disagree on the state they start from/);
    for (const e of expected) assert.match(String(l.error), e);
  }
}

test('ranks that start with another loss scale or other random streams are refused before any step, naming them', { skip: gloo }, async () => {
  assertRefusedOnBoth(await loopCase(join(root, 'scaler'), 'scaler', 4), /the loss scaler \(scale, growth tracker\): rank 0 \[65536,0\], rank 1 \[1024,3\]/);
  assertRefusedOnBoth(await loopCase(join(root, 'rng'), 'rng', 4), /the random stream rng\.global: rank 0 "\w+", rank 1 "\w+"/, /the random stream rng\.order: /);
  assert.equal(existsSync(join(root, 'rng', 'checkpoints')), false, 'no step taken');
});

test('a rank resuming from a copy of the run at another position or with another carried loss window is refused, naming both', { skip: gloo }, async () => {
  const a = join(root, 'copy-a');
  const b = join(root, 'copy-b');
  const first = await loopCase(a, 'plain', 4);
  for (const r of first) assert.equal(line(r).stoppedBy, 'maxSteps');
  cpSync(a, b, { recursive: true });
  // the same step, but rank 1's copy says another batch and one more loss in the window (as a digest-valid state.json)
  const statePath = join(b, 'checkpoints', 'step-00000004', 'state.json');
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, unknown> & { batch: number; lossWindow: { sums: number[]; count: number } };
  state.batch += 1;
  state.lossWindow = { sums: [0.5, 0.5], count: 1 };
  state.stateSha256 = stateDigest(state);
  writeFileSync(statePath, JSON.stringify(state));
  const runs = await loopCase(a, 'plain', 6, { RANK1_OUT_DIR: b });
  assertRefusedOnBoth(runs, /the position \(step, epoch, batch\): rank 0 \[4,0,4\], rank 1 \[4,0,5\]/, /the losses carried into the next log: rank 0 0, rank 1 1/);
  // the same copies, agreeing, resume
  rmSync(b, { recursive: true });
  cpSync(a, b, { recursive: true });
  for (const r of await loopCase(a, 'plain', 6, { RANK1_OUT_DIR: b })) assert.equal(line(r).steps, 6);
});

test('a NaN loss on rank 1 alone stops both ranks at the same step (the next checkpoint, before the next log step), as non-finite, with the message on rank 0', { skip: gloo }, async () => {
  const runs = await loopCase(join(root, 'nan'), 'nan', 12);
  const [r0, r1] = runs.map(line);
  for (const l of [r0, r1]) assert.deepEqual([l.steps, l.stoppedBy], [4, 'nonfinite'], JSON.stringify(l));
  assert.match(String((r0.log as string[]).join('\n')), /stopping: the loss became NaN\/Inf by step 4 .*The last good checkpoint is .*step-00000002/);
  assert.deepEqual(r1.log, [], 'rank 1 says nothing: rank 0 speaks for the ranks');
});
