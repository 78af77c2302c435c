// Ranks that do not start from the same place: each "node" on 127.0.0.1 runs its own command line, as
// on several machines (--nnodes 2 --node-rank 0/1). Different options, a dataset with a file missing on
// one machine, an encoder checkpoint that differs, an --out-dir that is not shared when resuming:
// before, these averaged gradients of different recipes silently, merged features of different
// encoders, crashed Gloo (SIGABRT) or left the ranks waiting for each other until the 30-minute
// timeout. Each is now refused on every rank before any work, naming what differs and each rank's value.
// Each process is killed after 90 s (and SEMAIM_DIST_TIMEOUT is 30 s), so a hang fails the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import { writePng } from '../../src/viz/png';
import { workerScript } from './helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
const MODEL = ['--img-size', '32', '--patch-size', '8', '--model', 'vit_tiny', '--embed-dim', '48', '--depth', '2', '--num-heads', '2',
  '--decoder-depth', '1', '--warmup-epochs', '0.5', '--log-every', '1', '--num-workers', '0', '--threads', '1', '--seed', '3', '--blur', 'false'];
const SYNTHETIC = ['--dataset', 'synthetic', '--synthetic-size', '64', '--epochs', '2', ...MODEL];

const root = mkdtempSync(join(tmpdir(), 'semaim-disagree-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

interface NodeRun { code: number | null; signal: NodeJS.Signals | null; out: string }

/** Node 0 and node 1 of a 2-node world on 127.0.0.1, each with its own arguments; resolves when both have exited. */
async function twoNodes(command: string, args: [string[], string[]]): Promise<[NodeRun, NodeRun]> {
  const port = await dist.freePort();
  const node = (rank: number) => new Promise<NodeRun>((resolve) => {
    const child = spawn(process.execPath, [CLI, command, ...args[rank], '--nnodes', '2', '--node-rank', String(rank), '--master-port', String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SEMAIM_DIST_TIMEOUT: '30' },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out }); });
  });
  return Promise.all([node(0), node(1)]);
}

function assertRefused(runs: NodeRun[], what: RegExp, detail: RegExp): void {
  for (const [rank, r] of runs.entries()) {
    assert.equal(r.signal, null, `node ${rank} was killed (a hang):\n${r.out}`);
    assert.notEqual(r.code, 0, `node ${rank} succeeded:\n${r.out}`);
    assert.match(r.out, what, `node ${rank}:\n${r.out}`);
    assert.match(r.out, detail, `node ${rank}:\n${r.out}`);
  }
}

/** Class folders a/ and b/ of 32×32 PNGs numbered 0..n-1, leaving out `skip` (`shift`: other pixels under the same names). */
async function imageFolder(dir: string, n: number, skip: number[] = [], shift = 0): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (skip.includes(i)) continue;
    const data = new Uint8Array(32 * 32 * 3).map((_, j) => (i * 37 + j * (i % 5 + 1) + shift) % 256);
    await writePng(join(dir, i % 2 ? 'b' : 'a', `${String(i).padStart(3, '0')}.png`), { width: 32, height: 32, data });
  }
}

test('pretrain: a rank with other options (--blr) is refused on every rank before any step, naming the option and both values', { skip: gloo }, async () => {
  const out = join(root, 'blr');
  const base = [...SYNTHETIC, '--batch-size', '16', '--max-steps', '2', '--out-dir', out];
  const runs = await twoNodes('pretrain', [base, [...base, '--blr', '0.5']]);
  assertRefused(runs, /the 2 ranks disagree on the command, its options and the versions/, /--blr: rank 0 [0-9.e-]+, rank 1 0\.5/);
  assert.ok(!existsSync(join(out, 'metrics.jsonl')), 'refused before any step');
});

test('pretrain: a file missing on one machine is refused before any step; another spelling of the same folder and other --threads/--num-workers are not', { skip: gloo }, async () => {
  await imageFolder(join(root, 'data-full'), 40);
  await imageFolder(join(root, 'data-short'), 40, [7]);
  const base = [...MODEL, '--dataset', 'folder', '--epochs', '3', '--batch-size', '4'];
  const bad = join(root, 'missing-file');
  const runs = await twoNodes('pretrain', [
    [...base, '--data-path', join(root, 'data-full'), '--out-dir', bad],
    [...base, '--data-path', join(root, 'data-short'), '--out-dir', bad],
  ]);
  // 40 vs 39 images at a global batch of 8: 5 batches per epoch on rank 0, 4 on rank 1 (the ranks used to wait for each other until the timeout)
  assertRefused(runs, /the 2 ranks disagree on the training data/, /samples: rank 0 40, rank 1 39/);
  assert.ok(!existsSync(join(bad, 'metrics.jsonl')), 'refused before any step');

  const good = join(root, 'same-data');
  const ok = await twoNodes('pretrain', [
    [...base, '--data-path', join(root, 'data-full'), '--max-steps', '2', '--out-dir', good],
    [...base, '--data-path', join(root, '.', 'data-full') + '/', '--num-workers', '1', '--threads', '2', '--max-steps', '2', '--out-dir', good],
  ]);
  for (const r of ok) assert.equal(r.code, 0, r.out);
});

test('pretrain on tar shards: another list of shards with as many samples is refused before any step, naming the data digest', { skip: gloo }, async () => {
  await imageFolder(join(root, 'to-pack'), 16);
  const pack = (out: string, perShard: string) => {
    const r = spawnSync(process.execPath, [CLI, 'shards', '--input', join(root, 'to-pack'), '--output', join(root, out), '--shard-size', perShard], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    return join(root, out);
  };
  // the same 16 images in 1 shard on one machine and in 2 on the other: before, only the sample count and classes were compared
  const [one, two] = [pack('shards-one', '16'), pack('shards-two', '8')];
  const out = join(root, 'shards-run');
  const base = [...MODEL, '--dataset', 'shards', '--epochs', '1', '--batch-size', '4', '--max-steps', '2', '--out-dir', out];
  const runs = await twoNodes('pretrain', [
    [...base, '--data-path', one],
    [...base, '--data-path', two],
  ]);
  assertRefused(runs, /the 2 ranks disagree on the training data/, /digest: rank 0 "[0-9a-f]{16}", rank 1 "[0-9a-f]{16}"/);
  assert.ok(!existsSync(join(out, 'metrics.jsonl')), 'refused before any step');
});

test('a machine that cannot start (a --data-path missing there) tells the other: both stop at once, naming its rank and reason', { skip: gloo }, async () => {
  await imageFolder(join(root, 'data-here'), 16);
  const base = [...MODEL, '--dataset', 'folder', '--epochs', '1', '--batch-size', '4', '--max-steps', '1'];
  const missing = join(root, 'not-on-this-machine');
  for (const failing of [1, 0]) {
    const out = join(root, `cannot-start-${failing}`);
    const args = [0, 1].map((rank) => [...base, '--data-path', rank === failing ? missing : join(root, 'data-here'), '--out-dir', out]);
    const runs = await twoNodes('pretrain', args as [string[], string[]]);
    const other = runs[1 - failing];
    // before, the other machine's workers waited for it until the timeout and then named no cause
    assertRefused(runs, /option --data-path: .*not-on-this-machine does not exist/, /rank \d of 2 c(annot|ould not) start/);
    assert.equal(runs[failing].code, 2, runs[failing].out);
    assert.match(other.out, new RegExp(`dist\\.init failed on rank ${1 - failing} of 2 \\(gloo\\): rank ${failing} of 2 could not start: option --data-path: `), other.out);
    assert.doesNotMatch(other.out, /ERR_DIST_TIMEOUT|not every rank joined/, other.out);
    assert.ok(!existsSync(join(out, 'metrics.jsonl')), 'nothing trained');
  }
});

test("a machine whose --config file is missing there tells the other: both stop at once, naming its rank and reason", { skip: gloo }, async () => {
  const out = join(root, 'config-missing');
  const base = [...SYNTHETIC, '--batch-size', '8', '--max-steps', '1', '--out-dir', out];
  const missing = join(root, 'run-not-on-this-machine.yaml');
  const runs = await twoNodes('pretrain', [base, [...base, '--config', missing]]);
  // before, its launcher failed before it knew its launch flags and told no one: node 0 waited until the timeout
  assertRefused(runs, /option --config: cannot read .*run-not-on-this-machine\.yaml/, /rank 1 of 2 c(annot|ould not) start/);
  assert.equal(runs[1].code, 2, runs[1].out);
  assert.doesNotMatch(runs[0].out, /ERR_DIST_TIMEOUT|not every rank joined/, runs[0].out);
  assert.ok(!existsSync(join(out, 'metrics.jsonl')), 'nothing trained');
});

test("a launcher that cannot start names the ranks its machine would have started (--node-rank × --nproc-per-node on); one whose --node-rank is beyond --nnodes tells no one", { skip: gloo }, async () => {
  const { commands } = await import('../../src/cli/commands');
  const port = await dist.freePort();
  const missing = join(root, 'config-not-here.yaml');
  const stderrOf = async (launch: string[]): Promise<string> => {
    const write = process.stderr.write.bind(process.stderr);
    let text = '';
    process.stderr.write = ((chunk: string) => ((text += chunk), true)) as typeof process.stderr.write;
    try {
      await assert.rejects(commands.pretrain.run(['--config', missing, ...launch, '--master-port', String(port)]), /option 'config': cannot read/);
    } finally {
      process.stderr.write = write;
    }
    return text;
  };
  const timeout = process.env.SEMAIM_DIST_TIMEOUT;
  process.env.SEMAIM_DIST_TIMEOUT = '1'; // no other machine listens: telling them gives up after 1 s
  try {
    const told = await stderrOf(['--nnodes', '2', '--nproc-per-node', '2', '--node-rank', '1']);
    assert.match(told, new RegExp(`^semaim: ranks 2-3 of 4 cannot start: option --config: cannot read .*\nsemaim: telling the other ranks at 127\\.0\\.0\\.1:${port} before stopping`), told);
    assert.equal(await stderrOf(['--nnodes', '2', '--node-rank', '2']), '', 'no valid launch: no ranks to tell');
  } finally {
    if (timeout === undefined) delete process.env.SEMAIM_DIST_TIMEOUT;
    else process.env.SEMAIM_DIST_TIMEOUT = timeout;
  }
});

test('a torchrun worker that cannot start (a bad option on its machine) tells the others before it exits', { skip: gloo }, async () => {
  const port = await dist.freePort();
  const out = join(root, 'worker-cannot-start');
  const worker = (rank: number, extra: string[]) =>
    new Promise<NodeRun>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'pretrain', ...SYNTHETIC, '--batch-size', '8', '--max-steps', '1', '--out-dir', out, ...extra], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SEMAIM_DIST_TIMEOUT: '30', RANK: String(rank), LOCAL_RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
      });
      let text = '';
      child.stdout.on('data', (c: Buffer) => (text += c.toString()));
      child.stderr.on('data', (c: Buffer) => (text += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, out: text });
      });
    });
  const runs = await Promise.all([worker(0, []), worker(1, ['--blr', '-1'])]);
  assertRefused(runs, /option --blr/, /rank 1 of 2 c(annot|ould not) start/);
  assert.equal(runs[1].code, 2, runs[1].out);
  assert.match(runs[0].out, /dist\.init failed on rank 0 of 2 \(gloo\): rank 1 of 2 could not start: option --blr/, runs[0].out);
});

test('pretrain resumed where rank 1 cannot see rank 0\'s checkpoint (an --out-dir that is not shared): refused naming the rank, not a hang', { skip: gloo }, async () => {
  const shared = join(root, 'node0-out');
  const local = join(root, 'node1-out');
  mkdirSync(local, { recursive: true });
  const args = [...SYNTHETIC, '--checkpoint-every', '2'];
  const first = spawnSync(process.execPath, [CLI, 'pretrain', ...args, '--batch-size', '32', '--max-steps', '2', '--out-dir', shared], { encoding: 'utf8', timeout: 90_000 });
  assert.equal(first.status, 0, `${first.stdout}\n${first.stderr}`);
  const runs = await twoNodes('pretrain', [
    [...args, '--batch-size', '16', '--max-steps', '4', '--out-dir', shared],
    [...args, '--batch-size', '16', '--max-steps', '4', '--out-dir', local],
  ]);
  for (const r of runs) assert.equal(r.signal, null, `killed (a hang):\n${r.out}`);
  assert.notEqual(runs[1].code, 0);
  assert.match(runs[1].out, /rank 1: rank 0 resumes from checkpoints\/step-00000002 \(step 2\), which this rank cannot see .*needs its --out-dir on storage every machine sees/);
  assert.notEqual(runs[0].code, 0, 'rank 0 cannot go on alone');
  // (rank 1's reason reaches rank 0 through the store: before, rank 0 said only that rank 1's connection closed)
  assert.match(runs[0].out, /rank 1 of 2 failed: rank 1: rank 0 resumes from checkpoints\/step-00000002 \(step 2\), which this rank cannot see/);
});

test('a rank that cannot open its data after the rendezvous (no images, no test/ split on its machine) is named with its reason on every rank, not as a closed connection', { skip: gloo }, async () => {
  await imageFolder(join(root, 'open-full', 'train'), 8);
  await imageFolder(join(root, 'open-full', 'test'), 8);
  mkdirSync(join(root, 'open-empty', 'a'), { recursive: true });
  await imageFolder(join(root, 'open-no-test', 'train'), 8);
  const pretrainArgs = (data: string) => [...MODEL, '--dataset', 'folder', '--data-path', join(root, data), '--batch-size', '4', '--max-steps', '1', '--out-dir', join(root, `open-${data}-run`)];
  const noImages = await twoNodes('pretrain', [pretrainArgs('open-full/train'), pretrainArgs('open-empty')]);
  assertRefused(noImages, /found no images under .*open-empty/, /found no images/);
  // before: "dist.allGather failed on rank 0 of 2 (gloo): ... Connection reset by peer"
  assert.match(noImages[0].out, /semaim: rank 1 of 2 could not start: ImageFolder: found no images under .*open-empty/, noImages[0].out);

  const knnArgs = (data: string) => ['--checkpoint', encoders()[0], '--dataset', 'folder', '--data-path', join(root, data), '--eval-batch-size', '4', '--k', '1', '--num-workers', '0', '--threads', '1', '--out-dir', join(root, 'open-knn')];
  const noTest = await twoNodes('knn', [knnArgs('open-full'), knnArgs('open-no-test')]);
  assertRefused(noTest, /has no test\/ \(or val\/\) folder/, /open-no-test/);
  assert.match(noTest[0].out, /semaim: rank 1 of 2 could not start: .*open-no-test has no test\/ \(or val\/\) folder/, noTest[0].out);
  assert.ok(!existsSync(join(root, 'open-knn', 'knn.json')));
});

test("rank 0's refusal to start the run (a resume with another global batch) reaches every rank with its reason; the launcher names rank 0 and exits with its code", { skip: gloo }, async () => {
  const out = join(root, 'regrouped');
  const args = [...SYNTHETIC, '--max-steps', '4', '--out-dir', out];
  const first = spawnSync(process.execPath, [CLI, 'pretrain', ...args, '--batch-size', '16', '--max-steps', '2'], { encoding: 'utf8', timeout: 90_000 });
  assert.equal(first.status, 0, `${first.stdout}\n${first.stderr}`);
  const refusal = /option --batch-size: the run in .*regrouped was started with other settings/;
  // before: rank 1 reported only "dist.allGather failed ... Connection closed by peer"
  const runs = await twoNodes('pretrain', [[...args, '--batch-size', '16'], [...args, '--batch-size', '16']]);
  assertRefused(runs, refusal, /--batch-size/);
  assert.match(runs[1].out, new RegExp(`rank 0 of 2 could not start: ${refusal.source}`), runs[1].out);
  // one machine, 3 workers: the two others fail at once with rank 0's reason while rank 0 exits; the launcher
  // could name the one it had itself stopped with SIGTERM and exit 1 (launch.test.ts: the told scenario)
  const local = spawnSync(process.execPath, [CLI, 'pretrain', ...args, '--batch-size', '16', '--nproc-per-node', '3'], { encoding: 'utf8', timeout: 90_000 });
  assert.equal(local.status, 2, local.stderr);
  assert.match(local.stderr, /launch: rank 0 \(node 0, local rank 0, pid \d+\) exited with code 2/, local.stderr);
});

let encoderRuns: [string, string] | null = null;
/** Two pre-training runs of the same architecture with other weights (made once). */
function encoders(): [string, string] {
  const enc = (name: string, seed: string) => {
    const r = spawnSync(process.execPath, [CLI, 'pretrain', ...SYNTHETIC, '--seed', seed, '--batch-size', '16', '--max-steps', '1', '--out-dir', join(root, name)], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    return join(root, name);
  };
  encoderRuns ??= [enc('enc-a', '3'), enc('enc-b', '4')];
  return encoderRuns;
}

test('knn: ranks with another encoder checkpoint or another test set are refused before writing knn.json', { skip: gloo }, async () => {
  const [a, b] = encoders();
  for (const split of ['train', 'test']) {
    await imageFolder(join(root, 'eval-full', split), 20);
    await imageFolder(join(root, 'eval-short', split), 20, split === 'test' ? [5] : []);
  }
  const knn = (checkpoint: string, data: string, out: string) =>
    ['--checkpoint', checkpoint, '--dataset', 'folder', '--data-path', join(root, data), '--eval-batch-size', '4', '--k', '1', '--num-workers', '0', '--threads', '1', '--out-dir', join(root, out)];

  const twoEncoders = await twoNodes('knn', [knn(a, 'eval-full', 'knn-enc'), knn(b, 'eval-full', 'knn-enc')]);
  assertRefused(twoEncoders, /the 2 ranks disagree on the encoder and the evaluation data/, /encoder sha256: rank 0 "[0-9a-f]{64}", rank 1 "[0-9a-f]{64}"/);
  assert.ok(!existsSync(join(root, 'knn-enc', 'knn.json')));

  // before: Gloo's all-gather of differently sized test sets aborted rank 1 (SIGABRT, "op.preamble.length <= op.nbytes")
  const data = await twoNodes('knn', [knn(a, 'eval-full', 'knn-data'), knn(a, 'eval-short', 'knn-data')]);
  assertRefused(data, /the 2 ranks disagree on the encoder and the evaluation data/, /test samples: rank 0 20, rank 1 19/);
  assert.ok(!existsSync(join(root, 'knn-data', 'knn.json')));
});

test('embed and segprobe: ranks with another encoder checkpoint (embed: or another image folder) are refused before writing', { skip: gloo }, async () => {
  const [a, b] = encoders();
  await imageFolder(join(root, 'images-full'), 12);
  await imageFolder(join(root, 'images-short'), 12, [3]);
  const embed = (checkpoint: string, images: string, out: string) =>
    ['--checkpoint', checkpoint, '--images', join(root, images), '--batch-size', '4', '--num-workers', '0', '--threads', '1', '--out', join(root, out, 'f.safetensors')];
  const enc = await twoNodes('embed', [embed(a, 'images-full', 'embed-enc'), embed(b, 'images-full', 'embed-enc')]);
  assertRefused(enc, /the 2 ranks disagree on the encoder and the images/, /encoder sha256: rank 0 "[0-9a-f]{64}", rank 1 "[0-9a-f]{64}"/);
  const images = await twoNodes('embed', [embed(a, 'images-full', 'embed-data'), embed(a, 'images-short', 'embed-data')]);
  assertRefused(images, /the 2 ranks disagree on the encoder and the images/, /samples: rank 0 12, rank 1 11/);
  for (const out of ['embed-enc', 'embed-data']) assert.ok(!existsSync(join(root, out, 'f.safetensors')));

  const seg = (checkpoint: string) =>
    ['--checkpoint', checkpoint, '--dataset', 'synthetic', '--train-limit', '16', '--test-limit', '8', '--epochs', '1', '--batch-size', '8', '--eval-batch-size', '8', '--figure-images', '0', '--threads', '1', '--out-dir', join(root, 'segprobe')];
  const runs = await twoNodes('segprobe', [seg(a), seg(b)]);
  assertRefused(runs, /the 2 ranks disagree on the encoder and the segmentation data/, /encoder sha256: rank 0 "[0-9a-f]{64}", rank 1 "[0-9a-f]{64}"/);
  assert.ok(!existsSync(join(root, 'segprobe', 'segprobe.json')));
});

test('pretrain resumed from out-dir copies that hold other weights at the same step: refused before any step, naming the weights and the optimiser state', { skip: gloo }, async () => {
  // each machine's copy of the run was trained on its own copy of the images, which differ in their
  // pixels but not in their names: at step 4 the copies hold other weights and AdamW moments. Before,
  // both resumed from "step 4": DDP broadcast rank 0's weights and rank 1 went on with its own moments, silently
  await imageFolder(join(root, 'pixels-a'), 32);
  await imageFolder(join(root, 'pixels-b'), 32, [], 101);
  const args = [...MODEL, '--dataset', 'folder', '--checkpoint-every', '2'];
  const run = (name: string) => [...args, '--data-path', join(root, `pixels-${name}`), '--out-dir', join(root, `copy-${name}`)];
  for (const name of ['a', 'b']) {
    const r = spawnSync(process.execPath, [CLI, 'pretrain', ...run(name), '--batch-size', '16', '--epochs', '2', '--max-steps', '4'], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  }
  // (the same global batch of 16: 8 per process)
  const more = ['--batch-size', '8', '--epochs', '3', '--max-steps', '6'];
  const runs = await twoNodes('pretrain', [[...run('a'), ...more], [...run('b'), ...more]]);
  assertRefused(runs, /the 2 ranks disagree on the state they start from \(before rank 0 broadcasts its weights\)/, /the model weights: [\w.]+: rank 0 sum [-0-9.e]+, sum of squares [0-9.e-]+, rank 1 sum /);
  for (const r of runs) assert.match(r.out, /the optimiser state: exp_avg/, r.out);
  assert.doesNotMatch(readFileSync(join(root, 'copy-a', 'metrics.jsonl'), 'utf8'), /"step":\s*[56]\b/, 'refused before any step');
});

test('pretrain with feature targets from another --teacher file on each machine: refused before any step, naming the teacher weights', { skip: gloo }, async () => {
  const [encA, encB] = encoders();
  const teacher = (run: string, name: string) => {
    const out = join(root, name);
    const r = spawnSync(process.execPath, [CLI, 'export', '--checkpoint', run, '--out', out], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    return `${out}.safetensors`;
  };
  const [ta, tb] = [teacher(encA, 'teacher-a'), teacher(encB, 'teacher-b')];
  const out = join(root, 'two-teachers');
  const base = [...SYNTHETIC, '--target', 'features', '--batch-size', '16', '--max-steps', '2', '--out-dir', out];
  const runs = await twoNodes('pretrain', [
    [...base, '--teacher', ta],
    [...base, '--teacher', tb],
  ]);
  assertRefused(runs, /the 2 ranks disagree on the state they start from/, /the teacher weights: [\w.]+: rank 0 sum [-0-9.e]+, .*rank 1 sum /);
  for (const r of runs) assert.doesNotMatch(r.out, /the model weights|the optimiser state/, 'the fresh model and empty optimiser agree');
  assert.ok(!existsSync(join(out, 'metrics.jsonl')), 'refused before any step');
});

/** A worker of workers/launched.ts ('ok') with its own RANK and WORLD_SIZE; killed after 90 s (a hang). */
function worldWorker(port: number, rank: number, world: number): Promise<NodeRun> {
  return new Promise<NodeRun>((resolve) => {
    const child = spawn(process.execPath, [workerScript('launched'), 'ok'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out }); });
  });
}

test('workers started with different WORLD_SIZEs (2 on rank 0, 3 on rank 1) fail at the rendezvous saying so', { skip: gloo }, async () => {
  const port = await dist.freePort();
  const runs = await Promise.all([worldWorker(port, 0, 2), worldWorker(port, 1, 3)]);
  for (const [rank, r] of runs.entries()) {
    assert.equal(r.signal, null, `rank ${rank} was killed (a hang):\n${r.out}`);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`dist\\.init failed on rank ${rank} of ${rank + 2}.*the ranks disagree on the world size: this one has WORLD_SIZE=${rank + 2}`));
  }
});

// Rank 0 of 2 never sees rank 2 (beyond its world): it waited for its rank 1 until the timeout (60 s here, 30 min by
// default), then said that rank 1 never came.
test('a rank whose WORLD_SIZE is below another rank’s number (rank 0 of 2 beside rank 2 of 4) fails at once saying so too', { skip: gloo }, async () => {
  const port = await dist.freePort();
  const started = Date.now();
  const runs = await Promise.all([worldWorker(port, 0, 2), worldWorker(port, 2, 4)]);
  const seconds = (Date.now() - started) / 1000;
  for (const [i, [rank, world, other]] of ([[0, 2, 4], [2, 4, 2]] as const).entries()) {
    const r = runs[i];
    assert.equal(r.signal, null, `rank ${rank} was killed (a hang):\n${r.out}`);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`dist\\.init failed on rank ${rank} of ${world}.*the ranks disagree on the world size: this one has WORLD_SIZE=${world}, rank ${2 - rank} has WORLD_SIZE=${other}`));
  }
  assert.ok(seconds < 30, `both stopped at once, not at the 60 s timeout: ${seconds} s`);
});

test('a command that does not run data-parallel (export, ablate), started as one of 2 workers (torchrun), refuses instead of doing the whole work twice', () => {
  const out = join(root, 'export-twice');
  const env = { ...process.env, RANK: '1', LOCAL_RANK: '1', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' };
  for (const [command, args, hint] of [
    ['export', ['--checkpoint', join(root, 'no-such-run'), '--out', join(out, 'enc')], /Run it as one process\.$/m],
    ['ablate', ['--out-dir', out], /--jobs N runs its measurements in N processes/],
  ] as const) {
    const r = spawnSync(process.execPath, [CLI, command, ...args], { encoding: 'utf8', env, timeout: 60_000 });
    assert.equal(r.status, 2, `${command}: ${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`\`semaim ${command}\` does not run data-parallel, and this process is rank 1 of 2 workers`));
    assert.match(r.stderr, hint);
  }
  assert.ok(!existsSync(out), 'nothing written');
  // a worker may run what is data-parallel (knn here, its help) and info (a look at the machine)
  for (const [command, args] of [
    ['knn', ['--help']],
    ['info', []],
  ] as const) {
    const r = spawnSync(process.execPath, [CLI, command, ...args], { encoding: 'utf8', env: { ...env, RANK: '0', LOCAL_RANK: '0' }, timeout: 60_000 });
    assert.equal(r.status, 0, `${command} ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /does not run data-parallel/);
  }
});
