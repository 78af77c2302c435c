// Faults a run must survive without losing work or using a corrupted file: corrupted checkpoints,
// an old run in the same folder, dead processes' temporary folders, a changed recipe on resume, a
// crash after logging, a finished run started again, corrupted evaluation inputs, and messages that
// must name the right option or file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { pretrain, TrainData } from '../../src/train/pretrain';
import { PRETRAIN_OPTIONS, PretrainOptions, checkModelFits, modelConfigFrom, semaimParameterCount, validatePretrain } from '../../src/train/pretrain-options';
import { recipeChanges } from '../../src/run/recipe';
import { MemoryLabelledData } from '../../src/data';
import { CheckpointManager } from '../../src/run/checkpoints';
import { verifyCheckpoint } from '../../src/io/checkpoint';
import { readMetrics } from '../../src/run/metrics';
import { OptionError, resolveOptions } from '../../src/util/options';
import { SemAIM, loadEncoder, loadTeacher, resolveCheckpoint, resolveEncoder, validateConfig } from '../../src/semaim';
import { memoryTrainData } from '../eval/helpers';
import { TINY_SEMAIM } from '../train/helpers';

function data(seed = 1): TrainData {
  const g = new torch.Generator(seed);
  const x = torch.randn([16, 3, 16, 16], { generator: g });
  const pixels = x.toFloat32Array();
  x.dispose();
  return memoryTrainData(new MemoryLabelledData(pixels, [16, 3, 16, 16], new Int32Array(16), 1), 4, seed);
}

function options(outDir: string, extra: Record<string, unknown> = {}): PretrainOptions {
  return resolveOptions(PRETRAIN_OPTIONS, {
    ...TINY_SEMAIM,
    decoderDepth: 1,
    blur: false,
    batchSize: 4,
    epochs: 20,
    warmupEpochs: 1,
    blr: 1e-3,
    logEvery: 1,
    checkpointEvery: 3,
    keepLast: 2,
    outDir,
    threads: 1,
    seed: 2,
    ...extra,
  });
}

const quiet = { log: () => {} };

/** The files of a checkpoint of step `step` whose model is one tensor: what a CheckpointManager saves. */
const stepFiles = (step: number) => ({ model: new Map([['w', torch.full([2], step)]]), extra: new Map(), state: { step, epoch: 0, batch: 0 } });

/**
 * An action of "the run" done inside the reader's fs.openSync, once: when the code under test opens a file
 * matching `file` for the `nth` time. `pending()`: whether it has yet to happen; `restore()` puts openSync back.
 */
function whenOpened(): { arm(file: RegExp, action: () => void, nth?: number): void; pending(): boolean; restore(): void } {
  const fs = require('node:fs') as typeof import('node:fs');
  const open = fs.openSync;
  let hook: { file: RegExp; opens: number; action: () => void } | null = null;
  fs.openSync = ((path: string, ...rest: Parameters<typeof open> extends [unknown, ...infer R] ? R : never) => {
    const armed = hook;
    if (armed && armed.file.test(String(path)) && --armed.opens === 0) {
      hook = null;
      armed.action();
    }
    return open(path, ...rest);
  }) as typeof fs.openSync;
  return {
    arm: (file, action, nth = 1) => {
      hook = { file, opens: nth, action };
    },
    pending: () => hook !== null,
    restore: () => {
      fs.openSync = open;
    },
  };
}
const steps = (dir: string) =>
  new CheckpointManager(dir)
    .list()
    .map((c) => c.step)
    .sort((a, b) => a - b);

function corrupt(file: string): void {
  const bytes = readFileSync(file);
  bytes[bytes.length - 5] ^= 0xff;
  writeFileSync(file, bytes);
}

function tmp(name: string): string {
  return mkdtempSync(join(tmpdir(), `semaim-${name}-`));
}

test('corrupted newer checkpoints never cause new ones to be deleted, and are kept aside', async () => {
  const dir = tmp('prune');
  await pretrain(options(dir, { maxSteps: 13 }), data(), quiet);
  assert.deepEqual(steps(dir), [12, 13]);
  for (const s of ['step-00000012', 'step-00000013', 'best']) corrupt(join(dir, 'checkpoints', s, 'model.safetensors'));
  const lines: string[] = [];
  const r = await pretrain(options(dir, { maxSteps: 7 }), data(), { log: (l) => lines.push(l) });
  assert.ok(r.checkpoint && existsSync(r.checkpoint), `the reported checkpoint ${r.checkpoint} exists`);
  assert.deepEqual(steps(dir), [6, 7]);
  assert.match(lines.join('\n'), /step-00000013 is corrupted/);
  // The earlier run, its corrupted checkpoints included, is kept aside, not deleted.
  const [previous] = readdirSync(join(dir, 'previous'));
  assert.equal(readdirSync(join(dir, 'previous', previous, 'checkpoints', 'corrupt')).length, 3);
  // A rerun continues from the new checkpoints instead of starting over.
  const again: string[] = [];
  await pretrain(options(dir, { maxSteps: 9 }), data(), { log: (l) => again.push(l) });
  assert.match(again.join('\n'), /resumed from .*step-00000007/);
  rmSync(dir, { recursive: true, force: true });
});

test("pruning deletes only this run's verified checkpoints: an older corrupted one and another run's one stay, and are not counted among the last K", async () => {
  const dir = tmp('prune-count');
  const other = tmp('prune-other');
  try {
    await pretrain(options(dir, { maxSteps: 5, checkpointEvery: 1, keepLast: 3 }), data(), quiet);
    assert.deepEqual(steps(dir), [3, 4, 5]);
    await pretrain(options(other, { maxSteps: 1 }), data(), quiet);
    cpSync(join(other, 'checkpoints', 'step-00000001'), join(dir, 'checkpoints', 'step-00000001'), { recursive: true });
    corrupt(join(dir, 'checkpoints', 'step-00000004', 'model.safetensors'));
    await pretrain(options(dir, { maxSteps: 6, checkpointEvery: 1, keepLast: 3 }), data(), quiet);
    // the good ones of this run are 6, 5 and 3: none goes; step 4 (corrupted) and step 1 (another run) are never pruned
    assert.deepEqual(steps(dir), [1, 3, 4, 5, 6]);
    await pretrain(options(dir, { maxSteps: 7, checkpointEvery: 1, keepLast: 3 }), data(), quiet);
    assert.deepEqual(steps(dir), [1, 4, 5, 6, 7]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(other, { recursive: true, force: true });
  }
});

test('a run stopped before its first checkpoint is moved aside under its run id from config.json; an id that is not a plain name is not used as one', async () => {
  const dir = tmp('no-checkpoint');
  for (const [runId, named] of [
    ['20261205T160000-abc123', /^20261205T160000-abc123-/],
    ['../../escaped', /^unknown-/],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ runId }));
    writeFileSync(join(dir, 'metrics.jsonl'), '{"step":1,"loss":1.5}\n');
    await pretrain(options(dir, { maxSteps: 1 }), data(), quiet);
    const previous = readdirSync(join(dir, 'previous'));
    assert.equal(previous.length, 1);
    assert.match(previous[0], named);
    assert.deepEqual(readdirSync(join(dir, 'previous', previous[0])).sort(), ['config.json', 'metrics.jsonl']);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fresh run (--no-resume) in a folder with another run moves that run aside instead of mixing with it', async () => {
  const dir = tmp('fresh');
  await pretrain(options(dir, { maxSteps: 5 }), data(), quiet);
  const oldBest = readFileSync(join(dir, 'checkpoints', 'best', 'state.json'), 'utf8');
  await pretrain(options(dir, { maxSteps: 2, resume: false }), data(), quiet);
  const previous = readdirSync(join(dir, 'previous'));
  assert.equal(previous.length, 1);
  const archived = join(dir, 'previous', previous[0]);
  assert.deepEqual(
    new CheckpointManager(archived)
      .list()
      .map((c) => c.step)
      .sort(),
    [4, 5],
  );
  assert.equal(readFileSync(join(archived, 'checkpoints', 'best', 'state.json'), 'utf8'), oldBest);
  assert.deepEqual(steps(dir), [2]);
  const best = JSON.parse(readFileSync(join(dir, 'checkpoints', 'best', 'state.json'), 'utf8')) as { step: number; runId: string };
  assert.equal(best.step <= 2, true, 'best belongs to the new run');
  assert.deepEqual(
    readMetrics(join(dir, 'metrics.jsonl')).map((m) => m.step),
    [1, 2],
  );
  rmSync(dir, { recursive: true, force: true });
});

test('when every step checkpoint is corrupted, the run resumes from its best one', async () => {
  const dir = tmp('best');
  await pretrain(options(dir, { maxSteps: 6 }), data(), quiet);
  const best = JSON.parse(readFileSync(join(dir, 'checkpoints', 'best', 'state.json'), 'utf8')) as { step: number };
  for (const c of new CheckpointManager(dir).list()) corrupt(join(c.dir, 'model.safetensors'));
  const lines: string[] = [];
  await pretrain(options(dir, { maxSteps: 8 }), data(), { log: (l) => lines.push(l) });
  assert.match(lines.join('\n'), new RegExp(`resumed from .*best \\(step ${best.step},`));
  rmSync(dir, { recursive: true, force: true });
});

/** Rewrites a checkpoint's state.json as a tool that knows nothing of its digest would (as the audit's tamper.py). */
function editState(ckpt: string, edit: (s: Record<string, unknown>) => void): void {
  const path = join(ckpt, 'state.json');
  const s = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(s);
  writeFileSync(path, JSON.stringify(s));
}

// The audit's reproductions: each used to be trusted on resume (a run writing folders named
// step-000000-2, a run "finished after abc steps", a load failing on garbage weights).
const TAMPERED: { name: string; edit: (s: Record<string, unknown>, ckpt: string) => void; problem: RegExp }[] = [
  { name: 'negative step', edit: (s) => (s.step = -7), problem: /state\.json: step is -7, not a non-negative integer/ },
  { name: 'step not a number', edit: (s) => Object.assign(s, { step: 'abc', epoch: null }), problem: /state\.json: step is "abc", not a non-negative integer/ },
  {
    name: 'no files listed',
    edit: (s, ckpt) => {
      s.files = {};
      writeFileSync(join(ckpt, 'model.safetensors'), 'garbage');
    },
    problem: /state\.json: files does not list model\.safetensors/,
  },
  {
    // (a resume read lossWindow.sums.length: a TypeError, not a quarantined checkpoint)
    name: 'loss window of another shape',
    edit: (s) => (s.lossWindow = { sum: 1.5, count: 2 }),
    problem: /state\.json: lossWindow is \{"sum":1\.5,"count":2\}, not the unlogged losses \(sums, one number per process, and their count\)/,
  },
];

test('a checkpoint whose state.json has bad counters or lists no files is quarantined, naming the field, and the run resumes from the older good one', async () => {
  const base = tmp('state');
  await pretrain(options(base, { maxSteps: 6 }), data(), quiet);
  assert.deepEqual(steps(base), [4, 6]);
  for (const { name, edit, problem } of TAMPERED) {
    const dir = tmp('state-case');
    cpSync(base, dir, { recursive: true });
    const newest = join(dir, 'checkpoints', 'step-00000006');
    editState(newest, (s) => edit(s, newest));
    assert.match(verifyCheckpoint(newest) ?? 'verified', problem, name);
    // The field is checked on its own, not only through the digest (older checkpoints have none).
    editState(newest, (s) => delete s.stateSha256);
    assert.match(verifyCheckpoint(newest) ?? 'verified', problem, name);
    const lines: string[] = [];
    const r = await pretrain(options(dir, { maxSteps: 8 }), data(), { log: (l) => lines.push(l) });
    const log = lines.join('\n');
    assert.match(log, new RegExp(`step-00000006 is corrupted \\(${problem.source}`), name);
    assert.match(log, /resumed from .*step-00000004 \(step 4, epoch 1, batch 0/, name);
    assert.equal(r.steps, 8, name);
    assert.equal(readdirSync(join(dir, 'checkpoints', 'corrupt')).length, 1, name);
    assert.deepEqual(
      readdirSync(join(dir, 'checkpoints')).filter((n) => !/^(step-\d{8}|best|corrupt)$/.test(n)),
      [],
      name,
    );
    rmSync(dir, { recursive: true, force: true });
  }
  rmSync(base, { recursive: true, force: true });
});

test('with only a checkpoint whose state.json is bad, the run refuses it, keeps it aside and starts afresh', async () => {
  for (const { name, edit, problem } of TAMPERED) {
    const dir = tmp('state-only');
    await pretrain(options(dir, { maxSteps: 4 }), data(), quiet);
    for (const n of ['step-00000003', 'best']) rmSync(join(dir, 'checkpoints', n), { recursive: true, force: true });
    const only = join(dir, 'checkpoints', 'step-00000004');
    editState(only, (s) => edit(s, only));
    const lines: string[] = [];
    await pretrain(options(dir, { maxSteps: 2 }), data(), { log: (l) => lines.push(l) });
    const log = lines.join('\n');
    assert.match(log, new RegExp(`step-00000004 is corrupted \\(${problem.source}`), name);
    assert.doesNotMatch(log, /resumed from/, name);
    assert.match(log, /starting a new run/, name);
    assert.deepEqual(steps(dir), [2], name);
    const [previous] = readdirSync(join(dir, 'previous'));
    assert.equal(readdirSync(join(dir, 'previous', previous, 'checkpoints', 'corrupt')).length, 1, name);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('state.json carries a digest of its content: a changed value is refused, each bad field is named, a checkpoint without a digest (older) still resumes', async () => {
  const dir = tmp('digest');
  await pretrain(options(dir, { maxSteps: 6 }), data(), quiet);
  const newest = join(dir, 'checkpoints', 'step-00000006');
  assert.equal(verifyCheckpoint(newest), null);
  const original = readFileSync(join(newest, 'state.json'), 'utf8');
  editState(newest, (s) => (s.batch = (s.batch as number) + 1));
  assert.match(verifyCheckpoint(newest) ?? 'verified', /state\.json does not match its recorded stateSha256/);
  const fields: [Record<string, unknown>, RegExp][] = [
    [{ epoch: 1e300 }, /state\.json: epoch is 1e\+300, not a non-negative integer/],
    [{ batch: undefined }, /state\.json: batch is missing, not a non-negative integer/],
    [{ worldSize: 0 }, /state\.json: worldSize is 0, not a positive integer/],
    [{ best: 'x' }, /state\.json: best is "x", not a finite number or null/],
    // no sums for 2 losses: the resumed run's first line was NaN, and it stopped as diverged (exit 1)
    [{ lossWindow: { sums: [], count: 2 } }, /state\.json: lossWindow is \{"sums":\[\],"count":2\}, not the unlogged losses/],
    [{ lossWindow: { sums: [3], count: 2.5 } }, /state\.json: lossWindow is .*, not the unlogged losses/],
    [{ lossWindow: { sums: ['x'], count: 1 } }, /state\.json: lossWindow is .*, not the unlogged losses/],
    [{ step: 5 }, /state\.json: step is 5, not 6 as the folder name says/],
    [{ files: { 'model.safetensors': 'x' } }, /state\.json: files does not list optimizer\.safetensors/],
  ];
  for (const [change, problem] of fields) {
    writeFileSync(join(newest, 'state.json'), original);
    editState(newest, (s) => Object.assign(s, change));
    assert.match(verifyCheckpoint(newest) ?? 'verified', problem);
  }
  writeFileSync(join(newest, 'state.json'), original);
  editState(newest, (s) => delete s.stateSha256);
  assert.equal(verifyCheckpoint(newest), null);
  const lines: string[] = [];
  await pretrain(options(dir, { maxSteps: 8 }), data(), { log: (l) => lines.push(l) });
  assert.match(lines.join('\n'), /resumed from .*step-00000006 \(step 6,/);
  rmSync(dir, { recursive: true, force: true });
});

test('temporary folders of dead processes (saving or deleting a checkpoint) are removed when a run starts; a live process keeps its own', async () => {
  const dir = tmp('temps');
  const root = join(dir, 'checkpoints');
  mkdirSync(join(root, '.tmp-step-00000004-999999999'), { recursive: true });
  mkdirSync(join(root, '.tmp-best-999999998'));
  mkdirSync(join(root, '.removed-step-00000002-999999997')); // a deletion cut short
  mkdirSync(join(root, '.tmp-step-00000004-1')); // pid 1 is alive
  await pretrain(options(dir, { maxSteps: 1 }), data(), quiet);
  const left = readdirSync(root).filter((n) => n.startsWith('.tmp-') || n.startsWith('.removed-'));
  assert.deepEqual(left, ['.tmp-step-00000004-1']);
  rmSync(dir, { recursive: true, force: true });
});

test('resuming with a changed recipe is refused with a table of the changes, and config.json is left as it was', async () => {
  const dir = tmp('recipe');
  await pretrain(options(dir, { maxSteps: 3 }), data(), quiet);
  const config = readFileSync(join(dir, 'config.json'), 'utf8');
  const changed = data();
  const live = torch.memoryStats().liveTensors;
  await assert.rejects(pretrain(options(dir, { maxSteps: 6, batchSize: 8, seed: 5 }), changed, quiet), (e: unknown) => {
    assert.ok(e instanceof OptionError);
    assert.match(e.message, /--batch-size +4 +8/);
    assert.match(e.message, /--seed +2 +5/);
    assert.match(e.message, /may change when resuming: .*--epochs/);
    return true;
  });
  assert.equal(torch.memoryStats().liveTensors, live, 'the refused run freed its model, optimiser and loss window');
  assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), config);
  // Options that may change (longer run, logging, cadence) resume.
  const r = await pretrain(options(dir, { maxSteps: 5, epochs: 30, logEvery: 2, checkpointEvery: 5 }), data(), quiet);
  assert.equal(r.steps, 5);
  rmSync(dir, { recursive: true, force: true });
});

test('a path option is compared by where it points: a relative --data-path resumes as the absolute one from another folder', async () => {
  const dir = tmp('paths');
  const cwd = process.cwd();
  const [started, elsewhere] = [join(dir, 'started-here'), join(dir, 'elsewhere')];
  mkdirSync(started);
  mkdirSync(elsewhere);
  try {
    process.chdir(started);
    await pretrain(options(join(dir, 'run'), { maxSteps: 3, dataset: 'folder', dataPath: 'imgs/train' }), data(), quiet);
    process.chdir(elsewhere);
    // the same words from another folder name another place
    await assert.rejects(
      pretrain(options(join(dir, 'run'), { maxSteps: 6, dataset: 'folder', dataPath: 'imgs/train' }), data(), quiet),
      /--data-path +"imgs\/train" +"imgs\/train"/,
    );
    const r = await pretrain(options(join(dir, 'run'), { maxSteps: 6, dataset: 'folder', dataPath: join(started, 'imgs', 'train') }), data(), quiet);
    assert.equal(r.steps, 6);
  } finally {
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  }
  // a run stored before its folder was recorded: relative paths are taken from where it resumes
  const stored = { dataPath: 'imgs/train' };
  assert.deepEqual(recipeChanges({ dataPath: PRETRAIN_OPTIONS.dataPath }, stored, { dataPath: join(cwd, 'imgs', 'train') }), []);
});

test('after a crash, the resumed run logs each step once', async () => {
  const dir = tmp('crash');
  // Checkpoints at steps 3 and 4 (epoch end), metrics logged up to step 5, then a crash in step 6.
  await assert.rejects(
    pretrain(options(dir, { maxSteps: 8 }), data(), {
      ...quiet,
      onStep: (s) => {
        if (s === 6) throw new Error('crash');
      },
    }),
    /crash/,
  );
  assert.deepEqual(
    readMetrics(join(dir, 'metrics.jsonl')).map((m) => m.step),
    [1, 2, 3, 4, 5],
  );
  await pretrain(options(dir, { maxSteps: 8 }), data(), quiet);
  assert.deepEqual(
    readMetrics(join(dir, 'metrics.jsonl')).map((m) => m.step),
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
  rmSync(dir, { recursive: true, force: true });
});

test('a finished run started again does nothing, keeps its checkpoint and reports its losses; zero epochs are refused', async () => {
  const dir = tmp('finished');
  const first = await pretrain(options(dir, { maxSteps: 4 }), data(), quiet);
  const ckpt = join(first.checkpoint!, 'model.safetensors');
  const mtime = statSync(ckpt).mtimeMs;
  const lines: string[] = [];
  const again = await pretrain(options(dir, { maxSteps: 4 }), data(), { log: (l) => lines.push(l) });
  assert.match(lines.join('\n'), /nothing to do/);
  assert.equal(again.steps, 4);
  assert.equal(statSync(ckpt).mtimeMs, mtime);
  assert.ok(Number.isFinite(again.firstLoss) && Number.isFinite(again.lastLoss));
  assert.equal(again.lastLoss, first.lastLoss);
  assert.throws(
    () => validatePretrain(options(dir, { epochs: 0, warmupEpochs: 0 })),
    (e: unknown) => e instanceof OptionError && e.key === 'epochs',
  );
  rmSync(dir, { recursive: true, force: true });
});

test('evaluation refuses a corrupted checkpoint folder unless verification is turned off', async () => {
  const dir = tmp('verify');
  const r = await pretrain(options(dir, { maxSteps: 2 }), data(), quiet);
  corrupt(join(r.checkpoint!, 'model.safetensors'));
  assert.throws(() => resolveEncoder(r.checkpoint!), /does not match its recorded SHA-256.*--no-verify/);
  assert.equal(resolveEncoder(r.checkpoint!, { verify: false }).kind, 'checkpoint');
  // A checkpoint listing no files, or a file outside its folder, is refused too.
  const listed = join(dir, 'listed');
  cpSync(r.checkpoint!, listed, { recursive: true });
  editState(listed, (s) => (s.files = {}));
  assert.throws(() => resolveEncoder(listed), /state\.json: files does not list model\.safetensors/);
  editState(
    listed,
    (s) => (s.files = { ...(JSON.parse(readFileSync(join(r.checkpoint!, 'state.json'), 'utf8')) as { files: object }).files, '../config.json': 'x' }),
  );
  assert.throws(() => resolveEncoder(listed), /state\.json: files names "\.\.\/config\.json", not a file of the checkpoint folder/);
  rmSync(dir, { recursive: true, force: true });
});

test('an evaluation whose checkpoint the run prunes, or whose best/ it replaces, after the evaluation checked it is refused (ERR_CHECKPOINT_CHANGED), never loaded in its place', async () => {
  const dir = tmp('rotated');
  const r = await pretrain(options(dir, { maxSteps: 6 }), data(), quiet);
  const root = join(dir, 'checkpoints');
  try {
    assert.deepEqual(steps(dir), [4, 6]);
    const changed = { code: 'ERR_CHECKPOINT_CHANGED', message: /was replaced by other bytes after it was checked .*run again/ };
    // best/ replaced between the check and the load, as the run's markBest does it (copy, then two renames)
    const best = join(root, 'best');
    rmSync(best, { recursive: true, force: true });
    cpSync(join(root, 'step-00000006'), best, { recursive: true });
    const fromBest = resolveEncoder(best);
    cpSync(join(root, 'step-00000004'), join(root, '.tmp-best'), { recursive: true });
    renameSync(best, join(root, '.old-best'));
    renameSync(join(root, '.tmp-best'), best);
    assert.throws(() => loadEncoder(fromBest), changed);
    // the run's newest checkpoint pruned between the check and the load: the same code, not a bare ENOENT
    const newest = resolveEncoder(dir);
    assert.equal(newest.weights, join(r.checkpoint!, 'model.safetensors'));
    rmSync(r.checkpoint!, { recursive: true });
    assert.throws(() => loadEncoder(newest), { code: 'ERR_CHECKPOINT_CHANGED', message: /was removed after it was checked/ });
    // what is there then loads
    loadEncoder(resolveEncoder(dir)).encoder.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a reader picking a run's checkpoint while the run prunes it or replaces best/ gets a whole, verified one: the run's newest, not a report of damage or an ENOENT", () => {
  const dir = tmp('pruning');
  const root = join(dir, 'checkpoints');
  const mgr = new CheckpointManager(dir, 1, () => {});
  // the run's save happens when the reader opens the weights to hash them: between its state.json and its weights
  const opened = whenOpened();
  const warnings: string[] = [];
  try {
    mgr.save(2, stepFiles(2));
    mgr.save(4, stepFiles(4));
    // step 6 saved, 2 and 4 pruned (--keep-last 1) while the reader hashes step 4
    opened.arm(/step-00000004[\\/]model\.safetensors$/, () => mgr.save(6, stepFiles(6)));
    assert.equal(resolveCheckpoint(dir, { onWarning: (w) => warnings.push(w) }), join(root, 'step-00000006'));
    assert.equal(opened.pending(), false, 'the save happened during the check');
    // best/ replaced (markBest's renames) while the reader hashes it
    mgr.save(8, stepFiles(8), { best: true });
    opened.arm(/best[\\/]model\.safetensors$/, () => mgr.save(10, stepFiles(10), { best: true }));
    assert.equal(resolveCheckpoint(join(root, 'best')), join(root, 'best'));
    assert.equal(opened.pending(), false);
    assert.equal(JSON.parse(readFileSync(join(root, 'best', 'state.json'), 'utf8')).step, 10);
    assert.deepEqual(warnings, [], 'no checkpoint was reported as damaged');
  } finally {
    opened.restore();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a checkpoint the run is deleting (pruning past --keep-last) is gone for a reader at once, never seen half deleted and taken for a damaged one', () => {
  const dir = tmp('half-deleted');
  const root = join(dir, 'checkpoints');
  const mgr = new CheckpointManager(dir, 1, () => {});
  const fs = require('node:fs') as typeof import('node:fs');
  const rm = fs.rmSync;
  // the run's deletion of a folder stops after its first file (the rest is deleted at the end), while the
  // reader, which has listed step 4, reads its state.json
  const unfinished: string[] = [];
  fs.rmSync = ((path: string, o?: import('node:fs').RmOptions) => {
    if (o?.recursive && fs.existsSync(join(path, 'model.safetensors'))) {
      rm(join(path, 'model.safetensors'));
      unfinished.push(path);
      return;
    }
    rm(path, o);
  }) as typeof fs.rmSync;
  const opened = whenOpened();
  const warnings: string[] = [];
  try {
    mgr.save(2, stepFiles(2));
    mgr.save(4, stepFiles(4));
    for (const p of unfinished.splice(0)) rm(p, { recursive: true, force: true });
    assert.deepEqual(steps(dir), [4]);
    opened.arm(/step-00000004[\\/]state\.json$/, () => mgr.save(6, stepFiles(6)));
    assert.equal(resolveCheckpoint(dir, { onWarning: (w) => warnings.push(w) }), join(root, 'step-00000006'));
    assert.equal(opened.pending(), false, 'the run saved step 6 and deleted step 4 while the reader checked step 4');
    assert.deepEqual(warnings, []);
  } finally {
    opened.restore();
    fs.rmSync = rm;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an encoder read from a run folder whose chosen checkpoint the run prunes before its header is read is the run's newer one; a checkpoint folder named itself is ERR_CHECKPOINT_CHANGED", async () => {
  const dir = tmp('pruned-read');
  await pretrain(options(dir, { maxSteps: 6 }), data(), quiet);
  const root = join(dir, 'checkpoints');
  const run = new CheckpointManager(dir, 1, () => {});
  const latest = run.loadLatest()!;
  const save = (step: number) => run.save(step, { model: latest.model, extra: latest.extra, state: latest.state, modelMetadata: latest.modelMetadata });
  // the run saves (and prunes the checkpoint the reader chose) when the reader opens its weights the
  // second time: after the check (which hashed them), before reading their header
  const opened = whenOpened();
  try {
    opened.arm(/step-00000006[\\/]model\.safetensors$/, () => save(8), 2);
    assert.equal(resolveEncoder(dir).weights, join(root, 'step-00000008', 'model.safetensors'));
    assert.equal(opened.pending(), false, 'the run saved while the reader read');
    opened.arm(/step-00000008[\\/]model\.safetensors$/, () => save(10), 2);
    assert.throws(() => resolveEncoder(join(root, 'step-00000008')), {
      code: 'ERR_CHECKPOINT_CHANGED',
      message: /step-00000008 was removed while it was being read .*run again/,
    });
  } finally {
    opened.restore();
    for (const t of [...latest.model.values(), ...latest.extra.values()]) t.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('model-config errors name the option, an oversized model is refused before allocation, a teacher error names its file', (t) => {
  assert.throws(
    () => modelConfigFrom(options('/x', { similaritySource: 'teacher' })),
    (e: unknown) => e instanceof OptionError && e.key === 'similaritySource',
  );
  assert.throws(
    () => modelConfigFrom(options('/x', { mlpRatio: 1e7 })),
    (e: unknown) => e instanceof OptionError && e.key === 'mlpRatio' && /must give an MLP of 1\.\.64 × --embed-dim units/.test(e.message),
  );
  // within every bound, yet trillions of parameters: refused by the size estimate, before allocation
  assert.throws(
    () => modelConfigFrom(options('/x', { embedDim: 16384, numHeads: 16, depth: 256, mlpRatio: 64 })),
    (e: unknown) => e instanceof OptionError && /billion parameters/.test(e.message),
  );
  const o = options('/x');
  assert.doesNotThrow(() => checkModelFits(modelConfigFrom(o), o));
  const cfg = modelConfigFrom(o);
  const model = new SemAIM(cfg);
  assert.equal(semaimParameterCount(cfg), model.numParameters());
  model.dispose();
  // in a new folder, not at a fixed name in the shared temp folder (any user can put a file there), and
  // matched as text (a $TMPDIR with regex characters in it, '[x]+', did not match itself)
  const teacherDir = tmp('teacher');
  t.after(() => rmSync(teacherDir, { recursive: true, force: true }));
  const missing = join(teacherDir, 'no-such-teacher.safetensors');
  const teacherCfg = { ...cfg, target: { type: 'features' as const, teacher: missing, teacherConfig: cfg } };
  assert.throws(
    () => loadTeacher(teacherCfg, 'cpu'),
    (e: Error) => e.message.includes(`cannot load the teacher ${missing}`),
  );
  const otherPatch = { ...teacherCfg, target: { ...teacherCfg.target, teacherConfig: { ...cfg, patchSize: cfg.patchSize * 2 } } };
  assert.throws(
    () => validateConfig(otherPatch),
    new RegExp(`it has ${cfg.imgSize}² images in ${2 * cfg.patchSize}² patches, the model ${cfg.imgSize}² in ${cfg.patchSize}²`),
  );
});

test('a run started on a folder another live process is writing to is refused before anything is moved', async () => {
  const dir = tmp('locked');
  await pretrain(options(dir, { maxSteps: 3 }), data(), quiet);
  const config = readFileSync(join(dir, 'config.json'), 'utf8');
  const child = spawn('sleep', ['30']);
  await new Promise((r) => child.once('spawn', r));
  try {
    writeFileSync(join(dir, 'run.lock'), JSON.stringify({ pid: child.pid, host: hostname(), since: new Date().toISOString() }));
    for (const resume of [true, false]) {
      await assert.rejects(pretrain(options(dir, { maxSteps: 6, resume }), data(), quiet), /is in use by another semaim run \(process \d+ on this machine/);
    }
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), config, 'config.json untouched');
    assert.ok(!existsSync(join(dir, 'previous')), 'nothing moved aside (--no-resume would have)');
    assert.deepEqual(steps(dir), [3]);
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((r) => child.once('exit', r));
  await pretrain(options(dir, { maxSteps: 6 }), data(), quiet); // the holder is gone: the run continues
  assert.equal(Math.max(...steps(dir)), 6);
  assert.ok(!existsSync(join(dir, 'run.lock')), 'released at the end');
  rmSync(dir, { recursive: true, force: true });
});

test("'best' is replaced before the step that beats it is in place, and a swap cut short is repaired from the old one", () => {
  const dir = tmp('best');
  const warnings: string[] = [];
  const mgr = new CheckpointManager(dir, 2, (m) => warnings.push(m));
  const files = (step: number) => ({ model: new Map([['w', torch.full([2], step)]]), extra: new Map(), state: { step, best: step } });
  const bestStep = () => JSON.parse(readFileSync(join(dir, 'checkpoints', 'best', 'state.json'), 'utf8')).step;
  try {
    mgr.save(1, files(1), { best: true });
    assert.equal(bestStep(), 1);
    // the copy into 'best' fails (a process killed there): the step that recorded the new best is not in place
    const fs = require('node:fs') as typeof import('node:fs');
    const cpSync = fs.cpSync;
    fs.cpSync = (() => {
      throw new Error('killed while copying');
    }) as typeof fs.cpSync;
    try {
      assert.throws(() => mgr.save(2, files(2), { best: true }), /killed while copying/);
    } finally {
      fs.cpSync = cpSync;
    }
    assert.deepEqual(
      mgr.list().map((c) => c.step),
      [1],
      'a resume starts from step 1, whose best is the best/ folder',
    );
    assert.equal(bestStep(), 1);
    // the rename of the new copy into 'best' fails after the old one was moved aside: the old one goes back
    const rename = fs.renameSync;
    fs.renameSync = ((from: string, to: string) => {
      if (/[\\/]\.tmp-best-\d+$/.test(String(from))) throw Object.assign(new Error('EIO: rename failed'), { code: 'EIO' });
      rename(from, to);
    }) as typeof fs.renameSync;
    try {
      assert.throws(() => mgr.save(2, files(2), { best: true }), /EIO: rename failed/);
    } finally {
      fs.renameSync = rename;
    }
    assert.equal(bestStep(), 1, "the old 'best' is back in place");
    assert.deepEqual(
      readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('.')),
      [],
    );
    // a process that died between moving the old best aside and putting the new one in place
    mgr.save(3, files(3), { best: true });
    const dead = 2 ** 22 + 1; // above Linux's pid_max
    renameSync(join(dir, 'checkpoints', 'best'), join(dir, 'checkpoints', `.old-best-${dead}`));
    mkdirSync(join(dir, 'checkpoints', `.tmp-best-${dead}`));
    new CheckpointManager(dir, 2, (m) => warnings.push(m)).removeDeadTemps();
    assert.equal(bestStep(), 3, 'restored, not lost');
    assert.match(warnings.join('\n'), /restored .*best from \.old-best-/);
    assert.deepEqual(
      readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('.')),
      [],
    );
    // the same, left by an earlier process with this process's id (a restarted container's processes start
    // with the same small ids): this process swaps 'best' within one synchronous call, so that one is not its own
    renameSync(join(dir, 'checkpoints', 'best'), join(dir, 'checkpoints', `.old-best-${process.pid}`));
    mkdirSync(join(dir, 'checkpoints', `.tmp-best-${process.pid}`));
    new CheckpointManager(dir, 2, (m) => warnings.push(m)).removeDeadTemps();
    assert.equal(existsSync(join(dir, 'checkpoints', 'best')) && bestStep(), 3, 'restored, not left aside for the next swap to delete');
    assert.deepEqual(
      readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('.')),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a step saved again (a run resumed at that step and stopped there) replaces its folder instead of failing on it', () => {
  const dir = tmp('same-step');
  const mgr = new CheckpointManager(dir, 2, () => {});
  const files = (v: number) => ({ model: new Map([['w', torch.full([2], v)]]), extra: new Map(), state: { v } });
  try {
    mgr.save(4, files(1));
    const again = mgr.save(4, files(2));
    assert.equal(JSON.parse(readFileSync(join(again, 'state.json'), 'utf8')).v, 2);
    assert.deepEqual(
      mgr.list().map((c) => c.step),
      [4],
    );
    assert.deepEqual(
      readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('.')),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an old 'best' that a dead process moved aside is removed once a 'best' is in place (a whole checkpoint's size otherwise left for ever)", () => {
  const dir = tmp('old-best');
  const warnings: string[] = [];
  try {
    const mgr = new CheckpointManager(dir, 2, (m) => warnings.push(m));
    mgr.save(1, { model: new Map([['w', torch.full([2], 1)]]), extra: new Map(), state: {} }, { best: true });
    const dead = 2 ** 22 + 1; // above Linux's pid_max
    mkdirSync(join(dir, 'checkpoints', `.old-best-${dead}`));
    assert.deepEqual(new CheckpointManager(dir, 2, (m) => warnings.push(m)).removeDeadTemps(), [`.old-best-${dead}`]);
    assert.deepEqual(readdirSync(join(dir, 'checkpoints')).sort(), ['best', 'step-00000001']);
    assert.match(warnings.join('\n'), /removed 1 unfinished checkpoint folder\(s\) of earlier processes: \.old-best-/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run killed before its first checkpoint and started again with the same recipe is the same run from step 0: no previous/ folder per kill, its metrics lines redone; another recipe moves it aside', async () => {
  const dir = tmp('killed-early');
  const o = options(dir, { maxSteps: 2, checkpointEvery: 1000 });
  await pretrain(o, data(), quiet);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { runId: string };
  const whole = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
  // as a kill before the first checkpoint leaves it: config.json and the lines logged, no checkpoint
  rmSync(join(dir, 'checkpoints'), { recursive: true, force: true });
  const lines: string[] = [];
  await pretrain(o, data(), { log: (l) => lines.push(l) });
  assert.match(
    lines.join('\n'),
    new RegExp(`run ${config.runId} stopped before its first checkpoint: starting it again from step 0 \\(2 logged line\\(s\\) are redone\\)`),
  );
  assert.equal(existsSync(join(dir, 'previous')), false);
  assert.equal((JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { runId: string }).runId, config.runId);
  const strip = (t: string) => t.replace(/"(time|imgPerSec)":[^,}]*,?/g, '');
  assert.equal(strip(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')), strip(whole), 'the same lines, once');
  rmSync(join(dir, 'checkpoints'), { recursive: true, force: true });
  await pretrain(options(dir, { maxSteps: 2, checkpointEvery: 1000, seed: 3 }), data(), quiet);
  assert.equal(readdirSync(join(dir, 'previous')).length, 1, 'another recipe: the earlier run is moved aside');
  // the same options, but config.json records another model (as another semaim version derives it): moved aside too
  rmSync(join(dir, 'checkpoints'), { recursive: true, force: true });
  const stored = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { model: Record<string, unknown> };
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...stored, model: { ...stored.model, depth: 99 } }));
  await pretrain(options(dir, { maxSteps: 2, checkpointEvery: 1000, seed: 3 }), data(), quiet);
  assert.equal(readdirSync(join(dir, 'previous')).length, 2, 'another model: the earlier run is moved aside');
  // the same recipe with --no-resume: a new run, the earlier one moved aside
  rmSync(join(dir, 'checkpoints'), { recursive: true, force: true });
  const earlier = (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { runId: string }).runId;
  await pretrain(options(dir, { maxSteps: 2, checkpointEvery: 1000, seed: 3, resume: false }), data(), quiet);
  assert.equal(readdirSync(join(dir, 'previous')).length, 3, '--no-resume: the earlier run is moved aside');
  assert.notEqual((JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { runId: string }).runId, earlier);
  rmSync(dir, { recursive: true, force: true });
});

test('a run killed before its first checkpoint, started again from another folder, compares its relative --data-path by where it points', async () => {
  // config.json kept no working folder: 'imgs' from another folder (other images) passed for the same run,
  // whose logged lines were then truncated and redone on the other images, not moved to previous/
  const root = tmp('killed-early-cwd');
  const [a, b] = [join(root, 'a'), join(root, 'b')];
  mkdirSync(a);
  mkdirSync(b);
  const out = join(root, 'run');
  const o = (dataPath: string) => options(out, { maxSteps: 2, checkpointEvery: 1000, dataset: 'folder', dataPath });
  const cwd = process.cwd();
  try {
    process.chdir(a);
    await pretrain(o('imgs'), data(), quiet);
    rmSync(join(out, 'checkpoints'), { recursive: true, force: true }); // as a kill before the first checkpoint leaves it
    process.chdir(b);
    const lines: string[] = [];
    await pretrain(o(join(a, 'imgs')), data(), { log: (l) => lines.push(l) }); // the same folder, named absolutely
    assert.match(lines.join('\n'), /stopped before its first checkpoint: starting it again from step 0/);
    assert.equal(existsSync(join(out, 'previous')), false);
    rmSync(join(out, 'checkpoints'), { recursive: true, force: true });
    await pretrain(o('imgs'), data(), quiet); // b/imgs: other images
    assert.equal(readdirSync(join(out, 'previous')).length, 1, 'another data folder: the earlier run is moved aside');
  } finally {
    process.chdir(cwd);
    rmSync(root, { recursive: true, force: true });
  }
});

test("a checkpoint is on the disk before its rename: the step folder flushed after its state.json, a new 'best' (files and folder) before the old one is deleted", () => {
  const dir = tmp('best-fsync');
  const fs = require('node:fs') as typeof import('node:fs');
  const [open, fsync] = [fs.openSync, fs.fsyncSync];
  const paths = new Map<number, string>();
  const flushed: string[] = [];
  fs.openSync = ((path: string, ...rest: Parameters<typeof open> extends [unknown, ...infer R] ? R : never) => {
    const fd = open(path, ...rest);
    paths.set(fd, String(path));
    return fd;
  }) as typeof fs.openSync;
  fs.fsyncSync = ((fd: number) => {
    flushed.push(paths.get(fd) ?? '?');
    fsync(fd);
  }) as typeof fs.fsyncSync;
  try {
    const manager = new CheckpointManager(dir);
    manager.save(1, stepFiles(1), { best: true });
    manager.save(2, stepFiles(2), { best: true });
    // the step's state.json, written last, named in its folder on the disk before the folder is renamed into place
    const stepTmp = join(dir, 'checkpoints', `.tmp-step-00000002-${process.pid}`);
    assert.ok(flushed.lastIndexOf(stepTmp) > flushed.lastIndexOf(join(stepTmp, 'state.json')), 'the step folder flushed after its state.json');
    const copy = join(dir, 'checkpoints', `.tmp-best-${process.pid}`);
    for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json', '']) {
      assert.equal(flushed.filter((p) => p === join(copy, f)).length, 2, `${join(copy, f)} flushed at each of the two saves`);
    }
  } finally {
    fs.openSync = open;
    fs.fsyncSync = fsync;
    rmSync(dir, { recursive: true, force: true });
  }
});
