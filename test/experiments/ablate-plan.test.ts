// Planning the ablation to a time budget, shards (--jobs), --stop-after-minutes, resuming an
// interrupted pre-training, and rows with named similarity tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { resolveOptions, OptionError } from '../../src/util/options';
import { ABLATE_OPTIONS, AblateOptions, parseOrderSpec, parseOrders, parseShard, validateAblate } from '../../src/experiments/ablate-options';
import {
  RANDOM_INIT,
  ablate,
  ablationExitCode,
  pretrainOptionsFor,
  ablationRecipe,
  runDirName,
  type AblationRun,
  type DivergedRun,
} from '../../src/experiments/ablate';
import {
  assignShards,
  epochsForSteps,
  loaderWaitOf,
  planInputsDiffer,
  planSteps,
  readPlan,
  runSeconds,
  shardOf,
  stepTiming,
  waitForDevice,
  PlannedRun,
  Measurement,
} from '../../src/experiments/ablate-plan';
import { childArgs } from '../../src/cli/ablate-jobs';
import { StoppedBySignal } from '../../src/run/signals';
import { memoryFactories, toyImages } from '../eval/helpers';
import { printed } from '../output';

const train = toyImages(32, 3, 8, 1);
const testData = toyImages(12, 3, 8, 2);

function options(dir: string, extra: Record<string, unknown> = {}): AblateOptions {
  return resolveOptions(ABLATE_OPTIONS, {
    orders: 'raster,semantic',
    seeds: 1,
    budget: 'small',
    imgSize: 8,
    patchSize: 4,
    embedDim: 16,
    depth: 1,
    numHeads: 2,
    decoderDepth: 1,
    epochs: 2,
    batchSize: 8,
    pretrainLimit: 16,
    linprobeEpochs: 2,
    k: '5',
    trainLimit: 30,
    outDir: dir,
    threads: 1,
    ...extra,
  });
}

test('the plan arithmetic: the largest step count whose longest shard fits, and epochs that give exactly those steps', () => {
  const measured: Measurement = { steps: { a: { step: 1, startup: 2 }, b: { step: 0.5, startup: 2 } }, evalSeconds: 3 };
  const runs: PlannedRun[] = [
    { key: 'a/0', row: 'a' },
    { key: 'a/1', row: 'a' },
    { key: 'b/0', row: 'b' },
    { key: 'b/1', row: 'b' },
    { key: 'base/0', row: null },
  ];
  const noWait = () => 0;
  assert.equal(runSeconds(runs[0], 10, { measured, loaderWait: noWait }), 10 + 2 + 3);
  assert.equal(runSeconds(runs[4], 10, { measured, loaderWait: noWait }), 3);
  for (const jobs of [1, 2]) {
    const a = { budgetSeconds: 200, spentSeconds: 20, runs, measured, loaderWait: noWait, jobs, fill: 1 };
    const p = planSteps(a);
    const span = (s: number) =>
      assignShards(
        runs.map((r) => ({ key: r.key, seconds: runSeconds(r, s, a) })),
        jobs,
      ).makespan;
    assert.ok(span(p.steps) <= 180 && span(p.steps + 1) > 180, `jobs ${jobs}: ${p.steps} steps`);
    assert.equal(p.predictedSeconds, 20 + span(p.steps));
    // one process: 2·(s + 5) + 2·(0.5 s + 5) + 3 ≤ 180 → s ≤ 52.6
    if (jobs === 1) assert.equal(p.steps, 52);
    assert.deepEqual(new Set(Object.values(p.shards)), new Set(jobs === 1 ? [0] : [0, 1]));
  }
  assert.equal(planSteps({ budgetSeconds: 10, spentSeconds: 0, runs, measured, loaderWait: noWait, jobs: 1 }).steps, 0, 'the evaluations alone do not fit');
  // The loader's time adds to a step when batches are made on the main thread.
  assert.equal(runSeconds(runs[0], 10, { measured, loaderWait: () => 0.1 }), 10 * 1.1 + 5);
  // Runs the plan does not know are spread round-robin over the shards.
  const keys = ['a/0', 'b/0', 'c/0', 'c/1', 'c/2'];
  assert.deepEqual(
    keys.map((_, i) => shardOf(keys, i, 2, { 'a/0': 1, 'b/0': 0 })),
    [1, 0, 0, 1, 0],
  );
  assert.deepEqual(
    keys.map((_, i) => shardOf(keys, i, 2, null)),
    [0, 1, 0, 1, 0],
  );
  for (const [steps, perEpoch] of [
    [1, 1],
    [7, 3],
    [1000, 781],
    [123457, 195],
    [5, 78],
    [99, 7],
  ]) {
    const e = epochsForSteps(steps, perEpoch);
    assert.equal(Math.ceil(e.epochs * perEpoch), steps, `${steps} steps of ${perEpoch}`);
    assert.equal(e.steps, steps);
  }
});

test('assignShards puts the longest runs first on the least loaded shard (ties: the lower shard, the earlier run)', () => {
  // longest first: b 5 → 0, c 3 → 1, d 3 → 1, a 1 → 0: makespan 6 (shortest first gave 8)
  const costs = [
    { key: 'a', seconds: 1 },
    { key: 'b', seconds: 5 },
    { key: 'c', seconds: 3 },
    { key: 'd', seconds: 3 },
  ];
  assert.deepEqual(assignShards(costs, 2), { shards: { b: 0, c: 1, d: 1, a: 0 }, makespan: 6 });
  const even = [
    { key: 'x', seconds: 2 },
    { key: 'y', seconds: 2 },
  ];
  assert.deepEqual(assignShards(even, 2).shards, { x: 0, y: 1 });
});

test('planSteps: a run that fits the limit exactly is planned, and 5 % of the budget is kept as margin by default', () => {
  const measured: Measurement = { steps: { a: { step: 1, startup: 0 } }, evalSeconds: 0 };
  const runs: PlannedRun[] = [{ key: 'a/0', row: 'a' }];
  const a = { spentSeconds: 0, runs, measured, loaderWait: () => 0, jobs: 1 };
  assert.equal(planSteps({ ...a, budgetSeconds: 100 }).steps, 95, 'the default fill 0.95');
  // exactly at the limit: one step, a power of two (where the doubling search stops), and between
  assert.equal(planSteps({ ...a, budgetSeconds: 1, fill: 1 }).steps, 1);
  assert.equal(planSteps({ ...a, budgetSeconds: 64, fill: 1 }).steps, 64);
  assert.equal(planSteps({ ...a, budgetSeconds: 37, fill: 1 }).steps, 37);
  assert.equal(planSteps({ ...a, budgetSeconds: 0.5, fill: 1 }).steps, 0);
});

test('shardOf: a planned shard beyond the shards now is planned anew; unplanned runs go round-robin among themselves', () => {
  const keys = ['a/0', 'c/0', 'c/1'];
  assert.deepEqual(
    keys.map((_, i) => shardOf(keys, i, 2, { 'a/0': 1 })),
    [1, 0, 1],
  );
  // planned for 3 shards, run in 2: shard 2 no longer exists
  assert.deepEqual(
    keys.map((_, i) => shardOf(keys, i, 2, { 'a/0': 2, 'c/0': 0, 'c/1': 1 })),
    [0, 0, 1],
  );
});

test('a plan is refused for another first seed or budget, extended for other rows, seeds or baseline', () => {
  const inputs = { budgetMinutes: 10, rows: ['raster'], seeds: 1, seed: 0, baseline: false, recipe: { a: 1 } };
  assert.deepEqual(planInputsDiffer(inputs, { ...inputs, seed: 1 }), { refuse: 'seed: 0 → 1', extended: '' });
  assert.deepEqual(planInputsDiffer(inputs, { ...inputs, budgetMinutes: 20 }), { refuse: 'budgetMinutes: 10 → 20', extended: '' });
  assert.deepEqual(planInputsDiffer(inputs, { ...inputs, rows: ['raster', 'semantic'], seeds: 2, baseline: true }), {
    refuse: '',
    extended: 'rows: ["raster"] → ["raster","semantic"], seeds: 1 → 2, baseline: false → true',
  });
});

test("loaderWaitOf: with no workers every batch's time adds to a step; with workers only what the step does not hide", () => {
  assert.equal(loaderWaitOf(0.3, 0)(1), 0.3);
  assert.equal(loaderWaitOf(0.3, 2)(1), 0);
  assert.equal(loaderWaitOf(0.3, 2)(0.1), 0.3 - 0.1);
});

test('readPlan refuses a file of another format and a warm-up as long as the run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-readplan-'));
  try {
    const plan = {
      format: 'semaim.ablation-plan/1',
      inputs: { recipe: {} },
      shards: {},
      measured: { steps: {}, evalSeconds: 0, processes: 1, loaderSecondsPerBatch: 0, loaderWorkers: 0, spentSeconds: 0 },
      batchesPerEpoch: 4,
      steps: 8,
      epochs: 2,
      warmupEpochs: 1,
    };
    writeFileSync(join(dir, 'plan.json'), JSON.stringify(plan));
    assert.equal(readPlan(dir)!.steps, 8);
    writeFileSync(join(dir, 'plan.json'), JSON.stringify({ ...plan, format: 'semaim.other/1' }));
    assert.throws(() => readPlan(dir), /is not an ablation plan \(format "semaim\.other\/1"\)/);
    // a newer semaim's plan is said to be one, not 'not an ablation plan'
    writeFileSync(join(dir, 'plan.json'), JSON.stringify({ ...plan, format: 'semaim.ablation-plan/2' }));
    assert.throws(
      () => readPlan(dir),
      /plan\.json was written by a newer semaim \(format 'semaim\.ablation-plan\/2'; this one reads 'semaim\.ablation-plan\/1'\)/,
    );
    writeFileSync(join(dir, 'plan.json'), JSON.stringify({ ...plan, warmupEpochs: 2 }));
    assert.throws(() => readPlan(dir), /'warmupEpochs' is 2, not in \[0, epochs\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("readPlan refuses, naming plan.json, a plan without its recipe, with a row's step times that are not numbers, or nested too deeply to compare (they were TypeErrors and a RangeError later, in makePlan and describePlan)", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-readplan-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = join(dir, 'plan.json');
  const plan = {
    format: 'semaim.ablation-plan/1',
    inputs: { recipe: { pretrain: {} } },
    shards: {},
    measured: { steps: { raster: { step: 0.1, startup: 1 } }, evalSeconds: 0, processes: 1, loaderSecondsPerBatch: 0, loaderWorkers: 0, spentSeconds: 0 },
    batchesPerEpoch: 4,
    steps: 8,
    epochs: 2,
    warmupEpochs: 1,
  };
  writeFileSync(p, JSON.stringify(plan));
  assert.equal(readPlan(dir)!.steps, 8);
  for (const [inputs, steps, message] of [
    [{}, plan.measured.steps, `${p}: 'inputs.recipe' is missing or not an object`],
    [{ recipe: 'small' }, plan.measured.steps, `${p}: 'inputs.recipe' is missing or not an object`],
    [plan.inputs, { raster: null }, `${p}: 'measured.steps.raster.step' is undefined, not a number ≥ 0`],
    [plan.inputs, { raster: { step: 0.1, startup: '1' } }, `${p}: 'measured.steps.raster.startup' is "1", not a number ≥ 0`],
    [plan.inputs, { raster: { step: -1, startup: 1 } }, `${p}: 'measured.steps.raster.step' is -1, not a number ≥ 0`],
  ] as const) {
    writeFileSync(p, JSON.stringify({ ...plan, inputs, measured: { ...plan.measured, steps } }));
    assert.throws(() => readPlan(dir), { message }, message);
  }
  writeFileSync(p, JSON.stringify(plan).replace('"pretrain":{}', `"pretrain":${'['.repeat(20_000)}${']'.repeat(20_000)}`));
  assert.throws(() => readPlan(dir), { message: `${p}: nested 20003 levels deep, more than the 100 a file of semaim's may` });
});

test('a plan refused for another recipe names the settings that differ', () => {
  const inputs = { recipe: { pretrain: { blr: 1.5e-4, seed: 0 }, ks: [20] }, budgetMinutes: 2, rows: ['raster'] } as unknown as Parameters<
    typeof planInputsDiffer
  >[0];
  const now = { ...inputs, recipe: { pretrain: { blr: 3e-4, seed: 0, emaSchedule: 'authors' }, ks: [20] } } as typeof inputs;
  assert.equal(planInputsDiffer(inputs, now).refuse, 'the recipe: pretrain.blr: 0.00015 → 0.0003, pretrain.emaSchedule: – → "authors"');
  assert.equal(planInputsDiffer(inputs, inputs).refuse, '');
});

test('an order named with its default tokens is the same row as the order alone: listed twice, refused (it pre-trained the same model twice)', () => {
  for (const list of ['semantic,semantic:cls', 'similarity:cls, raster, similarity'])
    assert.throws(
      () => parseOrders(list),
      (e: unknown) => e instanceof OptionError && e.key === 'orders' && /the same row/.test((e as Error).message),
      list,
    );
  assert.throws(
    () => parseOrders('raster,snake,raster'),
    (e: unknown) => e instanceof OptionError && e.key === 'orders' && (e as Error).message.endsWith('lists an order twice: raster,snake,raster'),
  );
  assert.deepEqual(parseOrders('semantic,semantic:gap,semantic:self,multicenter:cls'), ['semantic', 'semantic:gap', 'semantic:self', 'multicenter:cls']);
});

test('rows may name the tokens of S; shards and order specs are checked', () => {
  assert.deepEqual(parseOrderSpec('semantic:self'), { name: 'semantic:self', order: 'semantic', tokens: 'self' });
  assert.deepEqual(parseOrderSpec('raster'), { name: 'raster', order: 'raster' });
  assert.throws(() => parseOrderSpec('raster:self'), /only similarity, semantic, multicenter/);
  assert.throws(() => parseOrderSpec('semantic:foo'), /tokens must be cls, gap or self/);
  assert.throws(() => parseShard('2/2'), OptionError);
  assert.deepEqual(parseShard('1/3'), { index: 1, count: 3 });
  const o = options('/tmp/x', { orders: 'semantic:self' });
  const p = pretrainOptionsFor(o, ablationRecipe('small'), 'semantic:self', 0, '/tmp/x/r');
  assert.equal(p.order, 'semantic');
  assert.equal(p.similarityTokens, 'self');
  assert.equal(runDirName('semantic:self', 2), 'semantic-self-seed2');
  assert.equal(runDirName(RANDOM_INIT, 0), 'random-init-seed0');
  assert.throws(() => validateAblate(resolveOptions(ABLATE_OPTIONS, { budgetMinutes: 5, epochs: 3 })), /--budget-minutes or --epochs/);
  assert.throws(() => validateAblate(resolveOptions(ABLATE_OPTIONS, { planOnly: true })), /needs --budget-minutes/);
  // a shard is one process of a --jobs parent: --jobs 2 with --shard would start shards of a shard
  assert.throws(
    () => validateAblate(resolveOptions(ABLATE_OPTIONS, { jobs: 2, shard: '0/2' })),
    (e: unknown) => e instanceof OptionError && e.key === 'jobs' && /a shard runs in one process/.test(e.message),
  );
  validateAblate(resolveOptions(ABLATE_OPTIONS, { jobs: 1, shard: '0/2' }));
  // a parent-only flag (also in its --no- form) or --opt=value takes no value: the argument after it stays
  assert.deepEqual(childArgs(['--no-plan-only', '--seeds', '2', '--plan-measure', '--jobs=3']), ['--seeds', '2']);
  assert.deepEqual(childArgs(['--jobs', '2', '--seeds', '3', '--plan-only', '--stop-after-minutes=8', '--no-baseline', '--shard', '0/2', '--out-dir', 'x']), [
    '--seeds',
    '3',
    '--no-baseline',
    '--out-dir',
    'x',
  ]);
  // a flag's explicit value ('--plan-only true', as the parser takes it) goes with it, and so do the other spellings
  // the parser takes: the measuring children were started with a stray 'true' and stopped on it (exit 2)
  assert.deepEqual(
    childArgs([
      '--plan-only',
      'true',
      '--seeds',
      '2',
      '--plan_measure',
      'false',
      '--stop_after_minutes',
      '5',
      '--no_plan_only',
      '--no-plan-only',
      'false',
      '--planOnly',
      '--jobs',
      '2',
      '--k',
      '3',
    ]),
    ['--seeds', '2', '--k', '3'],
  );
});

test('--budget-minutes plans the length once (plan.json), every run gets the planned steps, and a later call reuses the plan', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-plan-'));
  try {
    const o = options(dir, { epochs: undefined, budgetMinutes: 2, planOnly: true });
    const lines: string[] = [];
    const planned = await ablate(o, memoryFactories(train, testData), { log: (l) => lines.push(l) });
    assert.equal(planned.runs.length, 0);
    assert.equal(planned.complete, false);
    const plan = JSON.parse(readFileSync(join(dir, 'plan.json'), 'utf8'));
    assert.equal(plan.format, 'semaim.ablation-plan/1');
    assert.deepEqual(Object.keys(plan.measured.steps).sort(), ['raster', 'semantic']);
    assert.equal(plan.batchesPerEpoch, 2, 'pretrain-limit 16 / batch 8');
    assert.ok(plan.steps >= 1 && plan.predictedSeconds <= 120, JSON.stringify(plan));
    assert.equal(Math.ceil(plan.epochs * 2), plan.steps);
    assert.ok(!existsSync(join(dir, 'ablation.md')));
    // A much smaller plan for the test's sake: the runs must follow whatever plan.json says.
    const small = { ...plan, steps: 3, epochs: 1.5, warmupEpochs: 0.3 };
    writeFileSync(join(dir, 'plan.json'), JSON.stringify(small));
    const again: string[] = [];
    const r = await ablate({ ...o, planOnly: false }, memoryFactories(train, testData), { log: (l) => again.push(l) });
    assert.ok(again.some((l) => /using the stored plan/.test(l)));
    assert.equal(r.complete, true);
    for (const run of r.runs.filter((x) => x.order !== RANDOM_INIT)) assert.equal(run.pretrain.steps, 3);
    assert.match(r.markdown, /length planned for --budget-minutes 2: 3 steps per run/);
    // A hand-edited plan that would train another length than it records is refused, naming plan.json.
    for (const [edit, message] of [
      [{ epochs: null }, /plan\.json: 'epochs' is null, not a positive number/],
      [{ epochs: 1e300 }, /plan\.json: 1e\+300 epochs of 2 batches are not its 3 steps/],
      [{ measured: undefined }, /plan\.json: 'measured' is missing or not an object/],
      [{ measured: { ...small.measured, evalSeconds: 'x' } }, /plan\.json: 'measured\.evalSeconds' is "x", not a number ≥ 0/],
    ] as const) {
      writeFileSync(join(dir, 'plan.json'), JSON.stringify({ ...small, ...edit }));
      await assert.rejects(ablate({ ...o, planOnly: false }, memoryFactories(train, testData), { log: () => {} }), message);
    }
    writeFileSync(join(dir, 'plan.json'), JSON.stringify(small));
    // A stored evaluation that cannot be read is kept aside and the run evaluated again, from its checkpoint.
    const trained = r.runs.find((x) => x.order !== RANDOM_INIT)!;
    const evalFile = join(trained.runDir, 'ablation-eval.json');
    writeFileSync(evalFile, '{"truncated": ');
    const redo: string[] = [];
    const r1 = await ablate({ ...o, planOnly: false }, memoryFactories(train, testData), { log: (l) => redo.push(l) });
    assert.ok(
      redo.some((l) => /ablation-eval\.json: .*; moved to .*\.unusable-.*, evaluating the run again/.test(l)),
      redo.join('\n'),
    );
    assert.ok(readdirSync(trained.runDir).some((f) => f.startsWith('ablation-eval.json.unusable-')));
    assert.deepEqual(r1.runs.find((x) => x.order === trained.order && x.seed === trained.seed)!.eval, trained.eval, 'the same scores');
    await assert.rejects(
      ablate({ ...o, planOnly: false, budgetMinutes: 3 }, memoryFactories(train, testData), { log: () => {} }),
      /planned for other settings \(budgetMinutes: 2 → 3\)/,
    );
    // A row added later gets the planned length (the earlier runs are reused).
    const more: string[] = [];
    const r2 = await ablate({ ...o, planOnly: false, orders: 'raster,semantic,semantic:self' }, memoryFactories(train, testData), { log: (l) => more.push(l) });
    assert.ok(
      more.some((l) => /planned for other runs: rows/.test(l)),
      more.join('\n'),
    );
    assert.equal(more.filter((l) => /already done/.test(l)).length, 3);
    assert.deepEqual(
      r2.runs.filter((x) => x.order !== RANDOM_INIT).map((x) => [x.order, x.pretrain.steps]),
      [
        ['raster', 3],
        ['semantic', 3],
        ['semantic:self', 3],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stop while the plan times its steps writes no plan and is a StoppedBySignal (with --jobs 1 it planned from 0 ms steps and ran on)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-plan-stop-'));
  try {
    const stop: { requested: boolean; signal?: 'SIGINT' } = { requested: false };
    const log = (l: string) => {
      // as a Ctrl-C once the first row is timed: the second row's timing is cut short
      if (/measured 'raster'/.test(l)) Object.assign(stop, { requested: true, signal: 'SIGINT' });
    };
    const o = options(dir, { epochs: undefined, budgetMinutes: 2 });
    await assert.rejects(ablate(o, memoryFactories(train, testData), { log, stop }), (e: unknown) => {
      assert.ok(e instanceof StoppedBySignal, String(e));
      assert.equal(e.exitCode, 130);
      return true;
    });
    assert.ok(!existsSync(join(dir, 'plan.json')), 'no plan from a cut-short timing');
    assert.ok(!existsSync(join(dir, 'runs')), 'no run started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an ablation told to stop before it starts runs nothing: a StoppedBySignal and no run folder (it pre-trained a step and wrote its checkpoint)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-stopped-'));
  try {
    const stop = { requested: true, signal: 'SIGINT' as const };
    await assert.rejects(ablate(options(dir), memoryFactories(train, testData), { log: () => {}, stop }), (e: unknown) => {
      assert.ok(e instanceof StoppedBySignal, String(e));
      assert.equal(e.exitCode, 130);
      assert.match(e.message, /^stopped before 'raster' seed 0; run the same command again to continue$/);
      return true;
    });
    assert.ok(!existsSync(join(dir, 'runs')), 'no run started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a diverged pre-training is recorded and left out of the table; the other runs still run, also when collected from shards', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-diverged-'));
  try {
    const o = options(dir, { orders: 'raster', blr: 1e8 });
    const lines: string[] = [];
    const r = await ablate(o, memoryFactories(train, testData), { log: (l) => lines.push(l) });
    assert.deepEqual(
      r.diverged.map((d) => [d.order, d.seed]),
      [['raster', 0]],
    );
    assert.deepEqual(
      r.runs.map((x) => x.order),
      [RANDOM_INIT],
      'the baseline after it still ran',
    );
    assert.equal(r.complete, false);
    assert.match(r.markdown, /\| raster +\| 0 \(1 diverged\) \|/);
    assert.match(r.markdown, /Diverged \(NaN\/Inf loss\), not evaluated: raster seed 0/);
    assert.doesNotMatch(r.markdown, /run the same command again/, 'a re-run diverges again');
    assert.ok(existsSync(join(dir, 'ablation.md')));
    // the advice names only ablate's options (it named --warmup-epochs and --no-resume, which ablate rejects)
    const advice = lines.find((l) => /became NaN\/Inf/.test(l)) ?? '';
    assert.match(advice, /a lower --blr/, lines.join('\n'));
    assert.doesNotMatch(advice, /--warmup-epochs|--no-resume/);
    // a later call (or the parent of --jobs shards) knows it from ablation-diverged.json, without training it again
    // (its baseline's evaluation lost, as if its shard had stopped before it)
    rmSync(join(dir, 'runs', runDirName(RANDOM_INIT, 0), 'ablation-eval.json'));
    const again: string[] = [];
    const r2 = await ablate({ ...o, jobs: 2 }, memoryFactories(train, testData), { log: (l) => again.push(l), runShards: async () => {} });
    assert.equal(r2.diverged.length, 1);
    assert.ok(!again.some((l) => /pre-training 'raster'/.test(l)), again.join('\n'));
    // the baseline its shard did not run is left to the next call, not run by the parent
    assert.deepEqual(r2.runs, []);
    assert.equal(r2.complete, false);
    assert.ok(
      again.some((l) => /none \(random init\) seed 0: not finished yet/.test(l)),
      again.join('\n'),
    );
    // a shard whose runs are done or diverged is done (exit 0, not 75: its parent reads ablation-diverged.json)
    const shard = await ablate({ ...o, shard: '0/1' }, memoryFactories(train, testData), { log: () => {} });
    assert.equal(shard.complete, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the exit code: 75 while runs other than diverged ones remain (scripts re-run on it), then 1 for a diverged run, else 0', () => {
  const run = {} as AblationRun;
  const diverged = { order: 'raster', seed: 0 } as DivergedRun;
  assert.equal(ablationExitCode({ runs: [run], diverged: [diverged], planned: 3 }), 75, 'one run still to do');
  assert.equal(ablationExitCode({ runs: [run], diverged: [diverged], planned: 2 }), 1);
  assert.equal(ablationExitCode({ runs: [run, run], diverged: [], planned: 2 }), 0);
  assert.equal(ablationExitCode({ runs: [run], diverged: [], planned: 2 }), 75);
});

test('`semaim ablate --shard` exits 75 when --stop-after-minutes stopped it before its runs were done (the --jobs parent and scripts re-run on it), 0 once they are', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-shard-75-'));
  const realNow = performance.now;
  try {
    const { makeEvalCommands } = await import('../../src/cli/eval-commands');
    const ablateCommand = makeEvalCommands(() => memoryFactories(train, testData)).ablate;
    const argv = ['--orders', 'raster', '--no-baseline', '--seeds', '1', '--budget', 'small', '--img-size', '8', '--patch-size', '4', '--embed-dim', '16'];
    argv.push('--depth', '1', '--num-heads', '2', '--decoder-depth', '1', '--epochs', '2', '--batch-size', '8', '--pretrain-limit', '16');
    argv.push('--linprobe-epochs', '2', '--k', '5', '--train-limit', '30', '--out-dir', dir, '--threads', '1', '--shard', '0/1');
    // every reading of the monotonic clock 10 minutes after the last: the 0.1 minutes are over before the first run
    let clock = realNow.call(performance);
    performance.now = () => (clock += 600_000);
    const stopped = await printed(() => ablateCommand.run([...argv, '--stop-after-minutes', '0.1']));
    performance.now = realNow;
    assert.equal(stopped.result, 75);
    assert.match(stopped.stdout, /^shard 0\/1: stopped early$/m);
    const done = await printed(() => ablateCommand.run(argv));
    assert.equal(done.result, 0);
    assert.match(done.stdout, /^shard 0\/1: done$/m);
  } finally {
    performance.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a plan made with --jobs 1 and continued with --jobs 2 spreads the runs over both shards (it ran all in shard 0)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-plan-jobs-'));
  try {
    const o = options(dir, { epochs: undefined, budgetMinutes: 2, seeds: 2 });
    await ablate({ ...o, planOnly: true }, memoryFactories(train, testData), { log: () => {} });
    const plan = JSON.parse(readFileSync(join(dir, 'plan.json'), 'utf8'));
    assert.equal(plan.jobs, 1);
    writeFileSync(join(dir, 'plan.json'), JSON.stringify({ ...plan, steps: 2, epochs: 1, warmupEpochs: 0.2 }));
    const shardLogs: Record<string, string[]> = {};
    const lines: string[] = [];
    const r = await ablate({ ...o, jobs: 2 }, memoryFactories(train, testData), {
      log: (l) => lines.push(l),
      runShards: async (shards) => {
        for (const s of shards) {
          shardLogs[s] = [];
          await ablate({ ...o, shard: s }, memoryFactories(train, testData), { log: (l) => shardLogs[s].push(l) });
        }
      },
    });
    assert.equal(r.complete, true);
    assert.equal(r.runs.length, 6);
    const ran = (s: string) => shardLogs[s].filter((l) => /\] (pre-training|baseline)/.test(l)).length;
    assert.equal(ran('0/2') + ran('1/2'), 6);
    assert.ok(ran('0/2') >= 2 && ran('1/2') >= 2, `${ran('0/2')} + ${ran('1/2')}`);
    assert.ok(
      lines.some((l) => /run in 2 process\(es\), planned for 1/.test(l)),
      lines.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an interrupted pre-training continues from its checkpoint, and ends where an uninterrupted ablation ends', async () => {
  const dirA = mkdtempSync(join(tmpdir(), 'semaim-ablate-int-'));
  const dirB = mkdtempSync(join(tmpdir(), 'semaim-ablate-ref-'));
  try {
    const stop = { requested: false };
    const first = ablate(options(dirA, { orders: 'semantic', baseline: false }), memoryFactories(train, testData), {
      log: () => {},
      stop,
      onStep: (s) => {
        if (s === 1) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500); // a first call that trains for 1.5 s or more
        if (s === 2) stop.requested = true;
      },
    });
    await assert.rejects(first, StoppedBySignal);
    // Its images per epoch cannot change half-way (the schedule's epochs would change mid-run), as for a finished run.
    await assert.rejects(
      ablate(options(dirA, { orders: 'semantic', baseline: false, pretrainLimit: 8 }), memoryFactories(train, testData), { log: () => {} }),
      /semantic-seed0 holds a pre-training with other options \(pretrainLimit: 16 → 8\); use a new --out-dir/,
    );
    const lines: string[] = [];
    const resumed = await ablate(options(dirA, { orders: 'semantic', baseline: false }), memoryFactories(train, testData), { log: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /resumed from .* \(step 2,/.test(l)),
      lines.join('\n'),
    );
    const ref = await ablate(options(dirB, { orders: 'semantic', baseline: false }), memoryFactories(train, testData), { log: () => {} });
    assert.equal(resumed.runs[0].pretrain.steps, 4);
    assert.equal(resumed.runs[0].pretrain.sha256, ref.runs[0].pretrain.sha256, 'the same final weights');
    assert.deepEqual(resumed.runs[0].eval, ref.runs[0].eval);
    // "pre-train min" is the whole pre-training's time, the first call's included (it counted the last call's alone) ...
    const seconds = resumed.runs[0].pretrain.seconds!;
    assert.ok(seconds >= 1.5, `${seconds} s`);
    // ... also for a run whose evaluation was lost (a kill during it): the call that finds its pre-training done adds nothing
    rmSync(join(dirA, 'runs', 'semantic-seed0', 'ablation-eval.json'));
    const again = await ablate(options(dirA, { orders: 'semantic', baseline: false }), memoryFactories(train, testData), { log: () => {} });
    assert.equal(again.runs[0].pretrain.seconds, seconds);
  } finally {
    rmSync(dirA, { recursive: true, force: true });
    rmSync(dirB, { recursive: true, force: true });
  }
});

test('--jobs runs shards (each its share, no table), then collects; --stop-after-minutes leaves a partial table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-jobs-'));
  const ref = mkdtempSync(join(tmpdir(), 'semaim-ablate-jobs-ref-'));
  try {
    const o = options(dir, { seeds: 2, jobs: 2 });
    const shardLogs: Record<string, string[]> = {};
    const r = await ablate(o, memoryFactories(train, testData), {
      log: () => {},
      runShards: async (shards) => {
        for (const s of shards) {
          shardLogs[s] = [];
          const part = await ablate({ ...o, jobs: 1, shard: s }, memoryFactories(train, testData), { log: (l) => shardLogs[s].push(l) });
          assert.equal(part.complete, true);
          assert.ok(!existsSync(join(dir, 'ablation.md')), 'a shard writes no table');
        }
      },
    });
    assert.equal(r.complete, true);
    assert.equal(r.runs.length, 6);
    const ran = (s: string) => shardLogs[s].filter((l) => /pre-training|baseline/.test(l)).length;
    assert.equal(ran('0/2') + ran('1/2'), 6);
    assert.ok(ran('0/2') >= 2 && ran('1/2') >= 2, `${ran('0/2')} + ${ran('1/2')}`);
    const plain = await ablate(options(ref, { seeds: 2 }), memoryFactories(train, testData), { log: () => {} });
    assert.deepEqual(
      r.summary.map((x) => [x.order, x.runs, x.scores, x.lastLoss]),
      plain.summary.map((x) => [x.order, x.runs, x.scores, x.lastLoss]),
    );

    // A time limit reached before a run: nothing started, a partial result; the same call later finishes.
    const late = mkdtempSync(join(tmpdir(), 'semaim-ablate-late-'));
    try {
      const lo = options(late);
      lo.stopAfterMinutes = 1e-6;
      // an older table of other settings: the command says it rewrote ablation.md/json, so it must (it kept the old one)
      writeFileSync(join(late, 'ablation.md'), '# an older table\n');
      const part = await ablate(lo, memoryFactories(train, testData), { log: () => {} });
      assert.equal(part.complete, false);
      assert.equal(part.runs.length, 0);
      assert.equal(part.planned, 3);
      assert.equal(existsSync(join(late, 'runs')), false, 'no pre-training was started after the time was up');
      assert.match(readFileSync(join(late, 'ablation.md'), 'utf8'), /Partial: 0 of 3 runs done/);
      assert.equal(JSON.parse(readFileSync(join(late, 'ablation.json'), 'utf8')).complete, false);
      const full = await ablate(options(late), memoryFactories(train, testData), { log: () => {} });
      assert.equal(full.complete, true);
      assert.doesNotMatch(full.markdown, /Partial/);
    } finally {
      rmSync(late, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(ref, { recursive: true, force: true });
  }
});

test('--stop-after-minutes reached during a pre-training: a partial table, exit 75, the run kept at its checkpoint; the same call continues it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-time-up-'));
  const realNow = performance.now;
  try {
    const o = { ...options(dir, { orders: 'raster', baseline: false }), stopAfterMinutes: 60 };
    const stop = { requested: false };
    const lines: string[] = [];
    const part = await ablate(o, memoryFactories(train, testData), {
      log: (l) => lines.push(l),
      stop,
      // after step 1 the 60 minutes are over, and the timer has asked for the stop
      onStep: (s) => {
        if (s !== 1) return;
        const now = realNow.call(performance);
        performance.now = () => now + 3_600_000;
        stop.requested = true;
      },
    });
    performance.now = realNow;
    assert.equal(part.complete, false, 'not an interruption (a StoppedBySignal), a partial ablation');
    assert.deepEqual(part.runs, []);
    assert.equal(ablationExitCode(part), 75);
    assert.ok(
      lines.some((l) => /--stop-after-minutes 60 reached during 'raster' seed 0 \(checkpoint at step 1\)/.test(l)),
      lines.join('\n'),
    );
    assert.match(readFileSync(join(dir, 'ablation.md'), 'utf8'), /Partial: 0 of 1 runs done; run the same command again to continue/);
    const again: string[] = [];
    const full = await ablate({ ...o, stopAfterMinutes: undefined }, memoryFactories(train, testData), { log: (l) => again.push(l) });
    assert.equal(full.complete, true);
    assert.equal(full.runs[0].pretrain.steps, 4);
    assert.ok(
      again.some((l) => /resumed from .* \(step 1,/.test(l)),
      again.join('\n'),
    );
  } finally {
    performance.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--stop-after-minutes: its timer's stop is the time limit even when the clock says otherwise (a timer may fire early, by libuv's cached clock), not an interruption", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-clock-'));
  const realNow = performance.now;
  try {
    const o = { ...options(dir, { orders: 'raster' }), stopAfterMinutes: 1e-6 };
    // the clock stands still: the timer (0.06 ms) fires before or during the first run while performance.now() is before the deadline
    const frozen = realNow.call(performance);
    performance.now = () => frozen;
    const part = await ablate(o, memoryFactories(train, testData), { log: () => {} });
    performance.now = realNow;
    assert.equal(part.complete, false, 'a partial ablation, not a StoppedBySignal');
    assert.equal(ablationExitCode(part), 75);
  } finally {
    performance.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--stop-after-minutes counts the time that passed, by the monotonic clock: a wall clock stepped an hour forward (NTP) during the first run does not end a 60-minute limit before the next', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-wall-step-'));
  const realNow = Date.now;
  try {
    const o = { ...options(dir, { orders: 'raster' }), stopAfterMinutes: 60 };
    const lines: string[] = [];
    const r = await ablate(o, memoryFactories(train, testData), {
      log: (l) => lines.push(l),
      onStep: (s) => {
        if (s !== 1) return;
        const later = realNow() + 3_600_000;
        Date.now = () => later;
      },
    });
    Date.now = realNow;
    assert.equal(r.complete, true, lines.join('\n'));
    assert.equal(ablationExitCode(r), 0);
    assert.ok(r.seconds >= 0 && r.seconds < 3600, `the call's wall time ${r.seconds} s`);
  } finally {
    Date.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--jobs with --budget-minutes plans from the slowest measuring process of each row; the shards get the minutes left of --stop-after-minutes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-jobs-plan-'));
  const realNow = performance.now;
  try {
    const measured = (step: number, startup: number, evalSeconds: number): Measurement => ({
      steps: { raster: { step, startup }, semantic: { step: step / 2, startup } },
      evalSeconds,
    });
    const o = options(dir, { epochs: undefined, budgetMinutes: 30, jobs: 2 });
    await ablate({ ...o, planOnly: true }, memoryFactories(train, testData), {
      log: () => {},
      measureInProcesses: async (n) => {
        assert.equal(n, 2);
        return [measured(0.5, 3, 2), measured(0.25, 4, 1)];
      },
    });
    const plan = JSON.parse(readFileSync(join(dir, 'plan.json'), 'utf8'));
    assert.deepEqual(plan.measured.steps, { raster: { step: 0.5, startup: 4 }, semantic: { step: 0.25, startup: 4 } });
    assert.equal(plan.measured.evalSeconds, 2);
    // five minutes pass before the shards start: they get the 25 of --stop-after-minutes 30 that are left
    let left: number | undefined;
    await ablate({ ...o, stopAfterMinutes: 30 }, memoryFactories(train, testData), {
      log: (l) => {
        if (!/^running \d+ runs in 2 processes/.test(l)) return;
        const shifted = realNow.call(performance) + 5 * 60_000;
        performance.now = () => shifted;
      },
      runShards: async (_shards, so) => {
        performance.now = realNow;
        left = so.stopAfterMinutes;
      },
    });
    assert.ok(left !== undefined && left > 24.9 && left <= 25, String(left));
  } finally {
    performance.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--plan-only: the command it prints to run the ablation gives the shell the same arguments (an --out-dir with a space and a quote)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-plan-only-'));
  try {
    const args = [
      '--budget',
      'small',
      '--orders',
      'raster',
      // (synthetic data: the default, CIFAR-10, needs the archive, which a checkout without ../shared/data lacks)
      '--dataset',
      'synthetic',
      '--embed-dim',
      '16',
      '--depth',
      '1',
      '--num-heads',
      '2',
      '--decoder-depth',
      '1',
      '--img-size',
      '16',
    ];
    args.push('--patch-size', '8', '--batch-size', '8', '--pretrain-limit', '16', '--train-limit', '16', '--test-limit', '8', '--linprobe-epochs', '1');
    args.push(
      '--threads',
      '1',
      '--num-workers',
      '0',
      '--no-baseline',
      '--pooling',
      'cls',
      '--k',
      '3',
      '--budget-minutes',
      '1',
      '--out-dir',
      join(dir, "my plan's"),
    );
    const main = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
    // --plan-only in each spelling the parser takes: the printed command kept '--plan-only=true' or '--plan_only' (it
    // only planned again) and a flag's explicit value ('--plan-only true' printed a stray 'true', refused)
    const planOnly = ['--plan-only', 'true', '--plan-only=true', '--plan_only', '--plan-only'];
    const r = spawnSync(process.execPath, [main, 'ablate', ...args.slice(0, 4), ...planOnly, ...args.slice(4)], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const line = /^ {2}semaim ablate (.*)$/m.exec(r.stdout);
    assert.ok(line, r.stdout);
    const words = spawnSync('sh', ['-c', `for a in ${line[1]}; do printf '%s\\n' "$a"; done`], { encoding: 'utf8' });
    assert.deepEqual(words.stdout.split('\n').slice(0, -1), args);
    // plan-only set in the --config file: the printed command said only --config, and so only planned again
    const config = join(dir, 'plan.json');
    writeFileSync(config, JSON.stringify({ plan_only: true }));
    const c = spawnSync(process.execPath, [main, 'ablate', ...args, '--config', config], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(c.status, 0, c.stderr);
    const again = /^ {2}semaim ablate (.*)$/m.exec(c.stdout);
    assert.ok(again, c.stdout);
    const words2 = spawnSync('sh', ['-c', `for a in ${again[1]}; do printf '%s\\n' "$a"; done`], { encoding: 'utf8' });
    assert.deepEqual(words2.stdout.split('\n').slice(0, -1), [...args, '--config', config, '--no-plan-only']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--budget-minutes measures in the out-dir, not $TMPDIR (missing here), and leaves no scratch folder there; a killed planner's is removed", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-plan-scratch-'));
  const saved = process.env.TMPDIR;
  try {
    mkdirSync(join(dir, '.plan-scratch-99999999-abc123')); // a planner killed with SIGKILL (no such process)
    process.env.TMPDIR = join(dir, 'no-such-tmp');
    await ablate(options(dir, { epochs: undefined, budgetMinutes: 2, planOnly: true }), memoryFactories(train, testData), { log: () => {} });
    assert.deepEqual(readdirSync(dir).sort(), ['plan.json']);
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stepTiming: the step is the median gap before each step after the warm-up, the startup the rest of the run, by the clock read around it', () => {
  // clock in ms: the run starts at 0, its 2 warm-up steps end at 2000 and 3000 (slow: the first builds the model)
  const stamps = [2000, 3000, 3250, 3750, 4750, 5500];
  // timed gaps 0.25, 0.5, 1, 0.75 s: median (0.5 + 0.75) / 2 (the warm-up's 1 s gap, or a gap left out, moves it)
  assert.deepEqual(stepTiming(0, stamps, 6500, 2, 6), { step: 0.625, startup: 6.5 - 0.625 * 6 });
  assert.deepEqual(stepTiming(1000, stamps.slice(0, 5), 5750, 2, 5), { step: 0.5, startup: 4.75 - 0.5 * 5 }, 'an odd count: the middle gap');
  // steps slower than the whole run's time over their count: no negative startup
  assert.deepEqual(stepTiming(0, [250, 500, 2500, 4500], 4500, 2, 4), { step: 2, startup: 0 });
  // no step after the warm-up: the mean gap of all steps
  assert.deepEqual(stepTiming(0, [1000, 1500, 3000], 3500, 3, 3), { step: 1, startup: 0.5 });
});

test('waitForDevice: a CUDA device is synchronised before a step or an evaluation is timed (its kernels only queued), the CPU is not', () => {
  const saved = torch.cuda.synchronize;
  const waited: number[] = [];
  torch.cuda.synchronize = () => void waited.push(1);
  try {
    waitForDevice('cuda');
    waitForDevice('cuda:1');
    assert.equal(waited.length, 2);
    waitForDevice('cpu');
    assert.equal(waited.length, 2, 'no CUDA context made for a CPU run');
  } finally {
    torch.cuda.synchronize = saved;
  }
});

test("shardOf: a plan's shard that is no shard index (-1, 0.5, a string: an edited plan.json) is planned anew, not given to a shard that never comes (the run was never done, exit 75 for ever)", () => {
  const keys = ['a/0', 'b/0', 'c/0'];
  for (const bad of [-1, 0.5, '1', null]) {
    const shards = keys.map((_, i) => shardOf(keys, i, 2, { 'a/0': bad as unknown as number, 'b/0': 1, 'c/0': 0 }));
    assert.deepEqual(shards, [0, 1, 0], JSON.stringify(bad));
  }
});
