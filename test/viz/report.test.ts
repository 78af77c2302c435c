import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { vizCommands } from '../../src/cli/viz-commands';
import { findEvalRows, lineChart, niceTicks, readRun, renderReport, reduceSeries, smooth } from '../../src/viz';
import { writeRunReport } from '../../src/viz/pipeline';
import { OptionError } from '../../src/util/options';
import { stepDirName } from '../../src/io/checkpoint';
import { tinyModel, writeRunCheckpoint, writeTestImages } from './helpers';
import { captureStderr, quiet } from '../output';

function fakeRun(dir: string, steps = 40): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ options: { batchSize: 8, blr: 2e-4, order: 'semantic' }, model: tinyModel(0).config }, null, 2));
  const lines = Array.from({ length: steps }, (_, i) =>
    JSON.stringify({
      time: new Date(0).toISOString(),
      step: (i + 1) * 10,
      epoch: i / 10,
      loss: 1.2 * Math.exp(-i / 15) + 0.1,
      lr: 1e-4 * Math.min(1, i / 5),
      gradNorm: 2 - i / 40,
      imgPerSec: 300 + (i % 3),
    }),
  );
  writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n') + '\n{"truncated":\n');
}

/** A run folder with metrics, a checkpoint of step 50 and two images in imgs/. */
async function fakeRunWithImages(run: string): Promise<void> {
  fakeRun(run, 5);
  const model = tinyModel(2);
  writeRunCheckpoint(run, model, 50);
  model.dispose();
  await writeTestImages(join(run, 'imgs'), 2);
}

test('report: self-contained HTML with SVG curves, config and evaluation tables', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-'));
  try {
    fakeRun(run);
    writeFileSync(join(run, 'knn.json'), JSON.stringify({ k: 20, temperature: 0.07, top1: 41.25, top5: 88.5 }));
    mkdirSync(join(run, 'eval'));
    writeFileSync(join(run, 'eval', 'linprobe.json'), JSON.stringify({ results: [{ epoch: 90, top1: 33.3, top5: 80.1 }] }));
    writeFileSync(join(run, 'eval', 'broken.json'), '{nope');
    const { result: rc, stderr } = await captureStderr(() => vizCommands.report.run([run]));
    assert.equal(rc, 0);
    assert.equal(stderr, `report: reading ${run} (config, metrics, results) …\n`, 'it says what it does before the silent work');
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    assert.match(html, /^<!DOCTYPE html>/);
    assert.equal((html.match(/<svg /g) ?? []).length, 4, 'loss, lr, throughput and grad-norm charts');
    assert.match(html, /<polyline points="[\d., ]+"/);
    // the cards read the last record: step 400 of epoch 3.9 (the first is step 10 of epoch 0)
    assert.match(html, /<div class="k">last step<\/div><div class="v">400</);
    assert.match(html, /<div class="k">last epoch<\/div><div class="v">3\.9</);
    for (const s of [
      'Training loss',
      'Learning rate',
      'Throughput',
      '41.25',
      '88.5',
      '33.3',
      'eval/linprobe.json results[0]',
      'blurKernel',
      'broken.json',
      'No visualisation',
    ]) {
      assert.ok(html.includes(s), `report mentions ${s}`);
    }
    assert.doesNotMatch(html, /<script|(src|href)="(https?:)?\/\//i, 'no scripts or external resources');
    assert.doesNotMatch(html, /https?:/i);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a metric named like an Object.prototype member gets its chart like any other', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-'));
  try {
    writeFileSync(join(run, 'metrics.jsonl'), '{"step": 1, "loss": 1, "constructor": 0.5}\n{"step": 2, "loss": 0.9, "constructor": 0.25}\n');
    const html = renderReport(readRun(run));
    assert.equal((html.match(/<svg /g) ?? []).length, 2, 'loss and constructor');
    assert.match(html, />constructor</);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a run whose loss became NaN/Inf says so at that step, and does not pass the last finite loss off as its last loss', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-nan-'));
  try {
    // as the trainer writes a run that stopped on a non-finite loss: JSON.stringify turns NaN into null
    const rec = (step: number, loss: number) => JSON.stringify({ step, epoch: step / 4, loss, lr: 1000, gradNorm: step === 1 ? 0.8 : NaN, imgPerSec: 30 });
    writeFileSync(join(run, 'metrics.jsonl'), [rec(1, 1.16), rec(2, 3.77e23), rec(3, NaN)].join('\n') + '\n');
    const html = renderReport(readRun(run));
    assert.match(html, /<div class="k">logged steps<\/div><div class="v">3<\/div>/);
    assert.match(html, /<div class="k">loss became NaN\/Inf<\/div><div class="v">at step 3<\/div>/);
    assert.match(html, /<div class="k">last finite loss \(step 2\)<\/div>/);
    assert.doesNotMatch(html, /<div class="k">last loss</);
    assert.match(html, /<h2>Problems<\/h2><ul><li>the loss became NaN\/Inf at step 3 \(metrics\.jsonl: loss null\); training stopped there/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

/** The SVG of the report's chart with this title. */
function chart(html: string, title: string): string {
  const at = html.indexOf(`aria-label="${title}"`);
  assert.ok(at >= 0, `no chart '${title}'`);
  return html.slice(at, html.indexOf('</svg>', at));
}

test('report: a gradient norm that was not finite breaks its line, is marked at those steps and named under Problems', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-gnorm-'));
  try {
    // as the trainer writes it: "Infinity" where the norm overflowed (null would be "not measured")
    const norms: unknown[] = [0.5, 3.7e16, 'Infinity', 'Infinity', 5e11, 2.8e11];
    const lines = norms.map((g, i) => JSON.stringify({ step: 2 * (i + 1), loss: 1, lr: 1, gradNorm: g, imgPerSec: 30 }));
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
    const html = renderReport(readRun(run));
    const svg = chart(html, 'Gradient norm (before clipping)');
    assert.equal(svg.match(/<polyline /g)?.length, 2, 'the line breaks at steps 6 and 8 instead of joining 4 to 10');
    assert.equal(svg.match(/stroke-dasharray/g)?.length, 2, 'a red dashed line at each of the two steps');
    assert.match(svg, /red dashes: not finite/);
    assert.match(html, /<li>the gradient norm was not finite at steps 6, 8 \(metrics\.jsonl: gradNorm &quot;Infinity&quot;\)<\/li>/);
    // under fp16 loss scaling such steps are the scaler's own (skipped): said so
    writeFileSync(join(run, 'config.json'), JSON.stringify({ options: { precision: 'fp16' } }));
    assert.match(
      renderReport(readRun(run)),
      /not finite at steps 6, 8 \(metrics\.jsonl: gradNorm &quot;Infinity&quot;\); with fp16 loss scaling such steps are skipped/,
    );
    rmSync(join(run, 'config.json'));
    // an older file's null (or a norm not measured) is a gap, with no claim about why
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n').replaceAll('"Infinity"', 'null') + '\n');
    const old = renderReport(readRun(run));
    assert.equal(chart(old, 'Gradient norm (before clipping)').match(/<polyline /g)?.length, 2);
    assert.doesNotMatch(old, /not finite/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a run whose loss was NaN from its first logged step gets a loss chart saying so, and Problems does not speak of a last finite loss', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-nan1-'));
  try {
    writeFileSync(join(run, 'metrics.jsonl'), JSON.stringify({ step: 2, epoch: 0.17, loss: null, lr: 6e10, gradNorm: 'NaN', imgPerSec: 95 }) + '\n');
    const html = renderReport(readRun(run));
    assert.match(chart(html, 'Training loss'), />no finite loss: NaN\/Inf from step 2</);
    assert.match(chart(html, 'Gradient norm (before clipping)'), />no finite gradNorm: NaN\/Inf from step 2</);
    assert.match(
      html,
      /<li>the loss became NaN\/Inf at step 2 \(metrics\.jsonl: loss null\); training stopped there, at its first logged step, so no finite loss was ever logged<\/li>/,
    );
    assert.doesNotMatch(html, /last finite loss/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: the median throughput of an even count is the mean of the middle two, not the upper one', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-median-'));
  try {
    const rates = [2.203, 1.5, 2.098, 21, 1.2, 9, 1.9, 2.5]; // runs/tiny of the audit: middle pair 2.098, 2.203
    writeFileSync(join(run, 'metrics.jsonl'), rates.map((r, i) => JSON.stringify({ step: i + 1, loss: 1, imgPerSec: r })).join('\n') + '\n');
    assert.match(renderReport(readRun(run)), /<div class="k">median img\/s<\/div><div class="v">2\.151<\/div>/);
    writeFileSync(
      join(run, 'metrics.jsonl'),
      rates
        .slice(0, 3)
        .map((r, i) => JSON.stringify({ step: i + 1, loss: 1, imgPerSec: r }))
        .join('\n') + '\n',
    );
    assert.match(renderReport(readRun(run)), /<div class="k">median img\/s<\/div><div class="v">2\.098<\/div>/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a long run folder name wraps instead of running off the page (title, run folder line and Problems wrap anywhere)', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-long-'));
  try {
    writeFileSync(join(run, 'metrics.jsonl'), JSON.stringify({ step: 1, loss: 1 }) + '\n');
    const html = renderReport(readRun(run));
    assert.match(html, /h1,p,li\{overflow-wrap:anywhere\}/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: checkpoints are ordered by step, not by name: step-100000000 (past the 8 padded digits) is newer than step-99999999', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-ckorder-'));
  try {
    for (const [step, sha] of [
      [99_999_999, 'a'.repeat(64)],
      [100_000_000, 'b'.repeat(64)],
    ] as const) {
      const d = join(run, 'checkpoints', stepDirName(step));
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'state.json'), JSON.stringify({ step, files: { 'model.safetensors': sha } }));
    }
    writeFileSync(
      join(run, 'knn.json'),
      JSON.stringify({
        format: 'semaim.eval/1',
        rows: [{ name: 'k-NN', accuracy: { top1: 0.5 } }],
        checkpoint: { weights: join(run, 'checkpoints', stepDirName(99_999_999), 'model.safetensors'), sha256: 'a'.repeat(64) },
      }),
    );
    const r = readRun(run);
    assert.deepEqual(r.checkpoints, [stepDirName(99_999_999), stepDirName(100_000_000)]);
    assert.equal(r.evals[0].checkpoint, 'step 99999999 (older than the newest, step 100000000)');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: a result of the run's best/ (its step since pruned) is said to be of that step, kept as best/, not of weights the run no longer has", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-evalbest-'));
  try {
    const write = (name: string, step: number, sha: string) => {
      const d = join(run, 'checkpoints', name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'state.json'), JSON.stringify({ step, files: { 'model.safetensors': sha } }));
    };
    write(stepDirName(200), 200, 'b'.repeat(64));
    write('best', 105, 'a'.repeat(64)); // step 105 scored best, then pruned (--keep-last)
    const result = (weights: string, sha: string) => ({
      format: 'semaim.eval/1',
      rows: [{ name: 'k-NN k=20', accuracy: { top1: 0.09, top5: 0.49, n: 100 } }],
      checkpoint: { path: join(run, 'checkpoints', 'best'), weights, sha256: sha, kind: 'checkpoint' },
    });
    mkdirSync(join(run, 'eval'));
    writeFileSync(join(run, 'eval', 'best.json'), JSON.stringify(result(join(run, 'checkpoints', 'best', 'model.safetensors'), 'a'.repeat(64))));
    // (was: 'model.safetensors (no checkpoint of this run has these weights now)', while best/ holds them)
    assert.equal(readRun(run).evals[0].checkpoint, 'step 105 (kept as best/; older than the newest, step 200)');
    // the weights of the newest step, also in best/: the step folder is named
    write('best', 200, 'b'.repeat(64));
    writeFileSync(join(run, 'eval', 'best.json'), JSON.stringify(result(join(run, 'checkpoints', 'best', 'model.safetensors'), 'b'.repeat(64))));
    assert.equal(readRun(run).evals[0].checkpoint, 'step 200');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a run folder whose checkpoints is a file, not a folder, is reported with that problem, not a crash (ENOTDIR)', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-ckfile-'));
  try {
    writeFileSync(join(run, 'config.json'), JSON.stringify({ model: { depth: 2 } }));
    writeFileSync(join(run, 'checkpoints'), 'not a folder');
    const r = readRun(run);
    assert.deepEqual(r.checkpoints, []);
    assert.equal(r.usableCheckpoint, null);
    assert.ok(
      r.problems.some((p) => /^checkpoints: not a folder/.test(p)),
      r.problems.join('\n'),
    );
    assert.match(renderReport(r), /checkpoints: not a folder/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: the Evaluation table says which checkpoint each result evaluated, and marks one older than the newest or no longer in the run', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-evalstep-'));
  try {
    for (const [step, sha] of [
      [105, 'a'.repeat(64)],
      [200, 'b'.repeat(64)],
    ] as const) {
      const d = join(run, 'checkpoints', `step-${String(step).padStart(8, '0')}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'state.json'), JSON.stringify({ step, files: { 'model.safetensors': sha } }));
    }
    const result = (sha: string, step: number) => ({
      format: 'semaim.eval/1',
      rows: [{ name: 'k-NN k=20', accuracy: { top1: 0.09, top5: 0.49, n: 100 } }],
      checkpoint: { path: run, weights: join(run, `checkpoints/step-${String(step).padStart(8, '0')}/model.safetensors`), sha256: sha, kind: 'checkpoint' },
    });
    mkdirSync(join(run, 'eval'));
    writeFileSync(join(run, 'eval', 'a-old.json'), JSON.stringify(result('a'.repeat(64), 105)));
    writeFileSync(join(run, 'eval', 'b-new.json'), JSON.stringify(result('b'.repeat(64), 200)));
    writeFileSync(join(run, 'eval', 'c-gone.json'), JSON.stringify(result('c'.repeat(64), 105))); // step 105 trained again since
    const html = renderReport(readRun(run));
    assert.match(html, /<th>top-5 %<\/th><th>checkpoint<\/th>/);
    assert.match(html, /<td>eval\/a-old\.json k-NN k=20<\/td><td>9\.00<\/td><td>49\.00<\/td><td>step 105 \(older than the newest, step 200\)<\/td>/);
    assert.match(html, /<td>eval\/b-new\.json k-NN k=20<\/td><td>9\.00<\/td><td>49\.00<\/td><td>step 200<\/td>/);
    assert.match(
      html,
      /<td>eval\/c-gone\.json k-NN k=20<\/td><td>9\.00<\/td><td>49\.00<\/td><td>step 105 \(no checkpoint of this run has these weights now\)<\/td>/,
    );
    // a fine-tuning's accuracy is of its own weights: the encoder it started from is this run's step 200
    const ft = {
      ...result('b'.repeat(64), 200),
      command: 'finetune',
      rows: [{ name: 'fine-tune (10 steps)', accuracy: { top1: 0.5, top5: 0.9, n: 100 } }],
      details: { finetuneCheckpoint: join(run, 'ft', 'checkpoints', 'step-00000010'), finetuneSha256: 'd'.repeat(64) },
    };
    writeFileSync(join(run, 'eval', 'd-ft.json'), JSON.stringify(ft));
    assert.match(
      renderReport(readRun(run)),
      /<td>eval\/d-ft\.json fine-tune \(10 steps\)<\/td><td>50\.00<\/td><td>90\.00<\/td><td>fine-tuned from step 200<\/td>/,
    );
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: the run's newest checkpoint is the one commands use (a newer one that does not verify is named under Problems)", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-ck-'));
  try {
    const model = tinyModel(2);
    writeRunCheckpoint(run, model, 50);
    const newer = writeRunCheckpoint(run, model, 60);
    model.dispose();
    writeFileSync(join(newer, 'model.safetensors'), 'damaged');
    const html = renderReport(readRun(run));
    assert.match(html, /<div class="v">2 \(newest usable: checkpoints\/step-00000050\)<\/div>/);
    assert.match(html, /<li>checkpoints\/step-00000060: not usable \(model\.safetensors does not match its recorded SHA-256\)/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: the configuration table shows config.json's numbers as written, not rounded to 4 digits (an EMA decay of 0.99999 read 1)", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-config-'));
  try {
    const options = { emaDecay: 0.99999, blr: 1.234567e-4, minLr: 1e-6, weightDecay: 0.05, seed: 1234567890123, batchSize: 8 };
    writeFileSync(join(run, 'config.json'), JSON.stringify({ options, model: { embedDim: 192 } }));
    const html = renderReport(readRun(run));
    const cells = new Map([...html.matchAll(/<tr><td>([^<]+)<\/td><td>([^<]*)<\/td><\/tr>/g)].map((m) => [m[1], m[2]]));
    for (const [key, value] of Object.entries(options)) assert.equal(cells.get(key), String(value), key);
    assert.equal(cells.get('embedDim'), '192');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a result JSON too large to read (a predict.json of many images) is named in Problems, not left out silently', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-large-'));
  try {
    writeFileSync(join(run, 'config.json'), JSON.stringify({ options: {} }));
    mkdirSync(join(run, 'pred'));
    const predictions = JSON.stringify({ path: '/x'.padEnd(200, 'y'), top: [{ index: 1, name: 'a', p: 0.5 }] });
    const big = `{"format":"semaim.predict/1","accuracy":{"top1":0.5,"top5":0.9,"n":3},"predictions":[${new Array(80_000).fill(predictions).join(',')}]}`;
    assert.ok(big.length > 16 << 20);
    writeFileSync(join(run, 'pred', 'predict.json'), big);
    writeFileSync(join(run, 'knn.json'), JSON.stringify({ top1: 0.25 }));
    const data = readRun(run);
    assert.deepEqual(
      data.evals.map((r) => r.source),
      ['knn.json'],
    );
    assert.deepEqual(data.problems, [join('pred', 'predict.json') + ': larger than 16 MiB: not read for evaluation results']);
    assert.match(renderReport(data), /<li>pred\/predict\.json: larger than 16 MiB: not read for evaluation results<\/li>/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: absent metrics, config and evaluations are reported, not fatal', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-'));
  try {
    const html = renderReport(readRun(run));
    assert.match(html, /No metrics\.jsonl/);
    assert.match(html, /No config\.json/);
    assert.match(html, /No evaluation results yet/);
    assert.throws(() => readRun(join(run, 'missing')), /run folder not found/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report --images: generates the grid from the run's newest checkpoint and embeds it as a data URI", async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-'));
  try {
    await fakeRunWithImages(run);
    const out = join(run, 'out', 'r.html');
    assert.equal(await vizCommands.report.run([run, '--images', join(run, 'imgs'), '--out', out, '--orders', 'raster,semantic', '--threads', '2']), 0);
    assert.ok(existsSync(join(run, 'viz', 'grid.png')));
    const html = readFileSync(out, 'utf8');
    assert.match(html, /<img class="viz" alt="visualisation grid" src="data:image\/png;base64,[A-Za-z0-9+/]+=*">/);
    assert.match(html, /step-00000050/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report --images: an --out whose folder cannot be made (a file on its path) is refused before any figure is drawn', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-under-file-'));
  try {
    await fakeRunWithImages(run);
    writeFileSync(join(run, 'notes.txt'), 'mine');
    await quiet(() =>
      assert.rejects(
        vizCommands.report.run([run, '--images', join(run, 'imgs'), '--out', join(run, 'notes.txt', 'r.html'), '--orders', 'raster', '--threads', '1']),
        /option 'out': .*notes\.txt exists and is not a folder/,
      ),
    );
    assert.ok(!existsSync(join(run, 'viz')), 'no figure was drawn');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: a file put at --out while the figures were drawn is kept (checked again at the rename), as is a non-report RUN_DIR/report.html', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-race-'));
  try {
    await fakeRunWithImages(run);
    const out = join(run, 'page.html');
    const job = { runDir: run, out, visualize: { images: [join(run, 'imgs')], orders: ['raster' as const], device: 'cpu' as const } };
    const pending = writeRunReport(job); // checks --out, then awaits the images
    writeFileSync(out, 'notes written meanwhile');
    await assert.rejects(pending, /option 'out': .*page\.html was created while the report was written and is not a semaim report: it is kept/);
    assert.equal(readFileSync(out, 'utf8'), 'notes written meanwhile');
    assert.deepEqual(
      readdirSync(run).filter((n) => n.includes('.tmp-')),
      [],
      'no temporary file is left',
    );
    const overwritten = writeRunReport({ ...job, overwrite: true });
    writeFileSync(out, 'notes written meanwhile');
    await overwritten;
    assert.match(readFileSync(out, 'utf8'), /<html/, '--overwrite replaces it');

    const byDefault = join(run, 'report.html');
    writeFileSync(byDefault, 'my own page');
    await quiet(async () => {
      await assert.rejects(vizCommands.report.run([run]), /report\.html exists and is not a semaim report/);
      assert.equal(readFileSync(byDefault, 'utf8'), 'my own page');
      assert.equal(await vizCommands.report.run([run, '--overwrite']), 0);
      assert.equal(await vizCommands.report.run([run]), 0, 'a report there is replaced');
    });
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('svg helpers: nice ticks, min/max reduction, empty chart', () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 0.3, 3), [0, 0.1, 0.2, 0.3], 'the end tick though 0.3 / 0.1 is 2.9999999999999996');
  const pts = Array.from({ length: 10000 }, (_, i) => [i, i === 5000 ? 99 : 0] as [number, number]);
  const r = reduceSeries(pts, 100);
  assert.ok(r.length <= 200 && r.some((p) => p[1] === 99), 'spikes survive the reduction');
  // up to 2 points per bucket are kept as they are; each bucket's min and max come out in x order
  const few = pts.slice(0, 150);
  assert.equal(reduceSeries(few, 100), few);
  const zigzag = Array.from({ length: 400 }, (_, i) => [i, i % 4 === 1 ? 5 : i % 4 === 2 ? -5 : 0] as [number, number]);
  const z = reduceSeries(zigzag, 100);
  assert.deepEqual(z.slice(0, 4), [
    [1, 5],
    [2, -5],
    [5, 5],
    [6, -5],
  ]);
  assert.ok(
    z.every((p, i) => i === 0 || p[0] > z[i - 1][0]),
    'in x order',
  );
  // the moving average is bias-corrected: a constant series stays that constant from its first point
  assert.deepEqual(
    smooth(
      [
        [0, 2],
        [1, 2],
      ],
      0.5,
    ),
    [
      [0, 2],
      [1, 2],
    ],
  );
  assert.match(lineChart([{ name: 'a', points: [], colour: '#000' }], { title: 't', xLabel: 'x' }), /no data/);
  assert.equal(findEvalRows({ a: { top1: 1 }, b: [{ top1: 2, top5: 3, k: 10 }] }, 'f').length, 2);
  // semaim's result files: one row per result, not again for the headline and the details that repeat it
  const knn = {
    format: 'semaim.eval/1',
    top1: 0.2,
    top5: 0.6,
    rows: [
      { name: 'k-NN k=20', accuracy: { top1: 0.2, top5: 0.6, n: 10 } },
      { name: 'k-NN k=10', accuracy: { top1: 0.1, top5: 0.5, n: 10 } },
    ],
    details: {
      perK: [
        { k: 10, top1: 0.1 },
        { k: 20, top1: 0.2 },
      ],
    },
  };
  assert.deepEqual(
    findEvalRows(knn, 'eval/knn.json').map((r) => [r.source, r.top1, r.top5]),
    [
      ['eval/knn.json k-NN k=20', 0.2, 0.6],
      ['eval/knn.json k-NN k=10', 0.1, 0.5],
    ],
  );
});

/** The y tick labels of a chart and the x of its plot area. */
function yTicks(svg: string): { labels: string[]; plotX: number } {
  const labels = [...svg.matchAll(/dy="4" text-anchor="end">([^<]*)<\/text>/g)].map((m) => m[1]);
  return { labels, plotX: Number(/<rect x="([\d.]+)"/.exec(svg)![1]) };
}

test('svg: tick labels get the digits their spacing needs (a narrow lr range reads 2.496e-5 … 2.500e-5, not 2.50e-5 five times), and say the range is narrow', () => {
  const lr = Array.from({ length: 8 }, (_, i) => [5 * (i + 1), 2.49996e-5 - (i * i * 3.8e-8) / 49] as [number, number]);
  const svg = lineChart([{ name: 'lr', points: lr, colour: '#000' }], { title: 'Learning rate', xLabel: 'step', yLabel: 'lr' });
  const { labels } = yTicks(svg);
  assert.ok(labels.length >= 3, svg);
  assert.equal(new Set(labels).size, labels.length, `distinct tick labels: ${labels.join(' ')}`);
  assert.deepEqual(labels, ['2.496e-5', '2.497e-5', '2.498e-5', '2.499e-5', '2.500e-5']);
  assert.match(svg, />y varies by only 0.15 %</);
  // a loss plateau, and ordinary ranges keep their short labels
  const plateau = yTicks(
    lineChart(
      [
        {
          name: 'l',
          points: [
            [1, 1.00012],
            [2, 1.00031],
          ],
          colour: '#000',
        },
      ],
      { title: 't', xLabel: 'x' },
    ),
  ).labels;
  assert.equal(new Set(plateau).size, plateau.length, plateau.join(' '));
  assert.deepEqual(
    yTicks(
      lineChart(
        [
          {
            name: 'l',
            points: [
              [1, 0],
              [2, 1],
            ],
            colour: '#000',
          },
        ],
        { title: 't', xLabel: 'x' },
      ),
    ).labels,
    ['0', '0.25', '0.5', '0.75', '1'],
  );
  assert.doesNotMatch(
    lineChart(
      [
        {
          name: 'l',
          points: [
            [1, 0.5],
            [2, 1],
          ],
          colour: '#000',
        },
      ],
      { title: 't', xLabel: 'x' },
    ),
    /varies by only/,
  );
});

test('svg: a logarithmic chart of values within one decade still has y ticks (no power of ten lay in its range: none were drawn)', () => {
  const yLabels = (svg: string) => [...svg.matchAll(/text-anchor="end">([^<]*)</g)].map((m) => m[1]);
  const narrow = yLabels(
    lineChart(
      [
        {
          name: 'a',
          points: [
            [0, 2],
            [1, 3],
            [2, 2.5],
          ],
          colour: '#000',
        },
      ],
      { title: 't', xLabel: 'x', logY: true },
    ),
  );
  assert.ok(narrow.length >= 2, `y tick labels: ${narrow.join(', ')}`);
  assert.ok(
    narrow.every((l) => Number(l) >= 1.9 && Number(l) <= 3.1),
    `inside the data's range: ${narrow.join(', ')}`,
  );
  // a range over decades keeps its powers of ten
  assert.deepEqual(
    yLabels(
      lineChart(
        [
          {
            name: 'a',
            points: [
              [0, 0.02],
              [1, 30],
            ],
            colour: '#000',
          },
        ],
        { title: 't', xLabel: 'x', logY: true },
      ),
    ),
    ['0.1', '1', '10'],
  );
});

test('svg: the left padding grows with the widest y tick label, so the rotated axis title (at x=13) stays left of it', () => {
  const norm = lineChart(
    [
      {
        name: 'g',
        points: [
          [2, 0],
          [4, 3.7e16],
          [10, 1],
        ],
        colour: '#000',
      },
    ],
    { title: 'Gradient norm', xLabel: 'step', yLabel: 'norm' },
  );
  const { labels, plotX } = yTicks(norm);
  const widest = Math.max(...labels.map((l) => l.length));
  assert.equal(widest, 8, labels.join(' ')); // 3.00e+16
  // labels end 5 px left of the plot; at ≥ 6 px a character (11 px digits) they must start right of the title (x 13, ~8 px tall)
  assert.ok(plotX - 5 - widest * 6 >= 13 + 8, `plot starts at ${plotX}: a label of ${widest} characters reaches the title`);
  // the usual narrow labels keep the usual padding
  assert.equal(
    yTicks(
      lineChart(
        [
          {
            name: 'l',
            points: [
              [1, 0],
              [2, 1],
            ],
            colour: '#000',
          },
        ],
        { title: 't', xLabel: 'x', yLabel: 'loss' },
      ),
    ).plotX,
    62,
  );
});

test('report: a long run (150,000 records), stray non-object lines and a non-object config.json', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-long-'));
  try {
    fakeRun(run, 150_000);
    writeFileSync(join(run, 'metrics.jsonl'), readFileSync(join(run, 'metrics.jsonl'), 'utf8') + 'null\n7\n[1,2]\n');
    writeFileSync(join(run, 'config.json'), '"hello"');
    const data = readRun(run);
    assert.equal(data.metricsTotals.records, 150_000, 'the non-object lines are left out');
    assert.ok(data.metricsSampled && data.metrics.length < 150_000 / 5, `a sample of ${data.metrics.length} draws the curves`);
    assert.ok(data.problems.includes('metrics.jsonl: 4 lines are not metrics records (left out of the curves): line 150001, 150002, 150003, 150004'));
    assert.ok(
      data.problems.some((p) => /config\.json: not a JSON object/.test(p)),
      data.problems.join('; '),
    );
    const html = renderReport(data);
    assert.match(html, /min loss/);
    assert.match(html, /<div class="k">logged steps<\/div><div class="v">150000</);
    assert.match(html, /150000 records: the curves are drawn from \d+ of them/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report --out replaces an earlier report, but another file only with --overwrite, and never a folder', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-out-'));
  await quiet(async () => {
    fakeRun(run);
    const precious = join(run, 'notes.json');
    writeFileSync(precious, '{"step": 2}');
    await assert.rejects(
      vizCommands.report.run([run, '--out', precious]),
      /option 'out': .*notes\.json exists and is not a semaim report: choose another --out, or pass --overwrite/,
    );
    assert.equal(readFileSync(precious, 'utf8'), '{"step": 2}');
    await assert.rejects(vizCommands.report.run([run, '--out', run]), /is a folder: give the HTML file to write/);
    await assert.rejects(
      vizCommands.report.run([run, '--out', join(run, 'new') + '/']),
      /new\/ names a folder: give the HTML file to write \(e.g. .*new\/report.html\)/,
    );
    const page = join(run, 'page.html');
    assert.equal(await vizCommands.report.run([run, '--out', page]), 0);
    assert.equal(await vizCommands.report.run([run, '--out', page]), 0, 'an earlier report is replaced');
    // a report from before the generator tag (semaim before 2026-12-03): its head and title say what it is
    const untagged = readFileSync(page, 'utf8').replace('<meta name="generator" content="semaim report">\n', '');
    assert.ok(untagged.startsWith('<!DOCTYPE html>') && !untagged.includes('generator'));
    writeFileSync(page, untagged);
    assert.equal(await vizCommands.report.run([run, '--out', page]), 0, 'a report semaim wrote before the tag is replaced');
    assert.match(readFileSync(page, 'utf8'), /content="semaim report"/);
    // whatever its title (the demo's was 'semaim demo')
    writeFileSync(page, untagged.replace(/<title>[^<]*<\/title>/, '<title>semaim demo</title>'));
    assert.equal(await vizCommands.report.run([run, '--out', page]), 0, "the demo's report from before the tag is replaced");
    // a page with another head is someone else's, even titled like a report
    writeFileSync(page, `<!DOCTYPE html>\n<html><head><title>SemAIM run report: ${run}</title></head></html>`);
    await assert.rejects(vizCommands.report.run([run, '--out', page]), /page\.html exists and is not a semaim report/);
    assert.equal(await vizCommands.report.run([run, '--out', precious, '--overwrite']), 0);
    assert.match(readFileSync(precious, 'utf8'), /<html/);
  }).finally(() => rmSync(run, { recursive: true, force: true }));
});

test('report: viz/grid.png is embedded only as a plain PNG file, never through a link (a run folder from elsewhere must not leak a file into the report)', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-link-'));
  try {
    const secret = join(run, '..', `${basename(run)}-secret.txt`);
    writeFileSync(secret, 'SECRET-TOKEN-123');
    fakeRun(run, 5);
    mkdirSync(join(run, 'viz'));
    symlinkSync(secret, join(run, 'viz', 'grid.png'));
    const r = await writeRunReport({ runDir: run });
    const html = readFileSync(r.out, 'utf8');
    assert.equal(r.grid, null);
    assert.ok(!html.includes(Buffer.from('SECRET-TOKEN-123').toString('base64')), 'the linked file is not embedded');
    assert.match(html, /Not embedded: .*grid\.png is not a plain PNG file/);
    rmSync(secret);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: viz/grid.png swapped for a link right after it is first looked at is not followed (checked on the descriptor it reads)', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-swap-'));
  const secret = join(run, '..', `${basename(run)}-secret.png`);
  // a plain object: its functions are replaceable
  const fs = require('node:fs') as { lstatSync: typeof import('node:fs').lstatSync; openSync: typeof import('node:fs').openSync };
  const real = { lstatSync: fs.lstatSync, openSync: fs.openSync };
  try {
    fakeRun(run, 5);
    const png = (text: string) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(text)]);
    const grid = join(run, 'viz', 'grid.png');
    mkdirSync(join(run, 'viz'));
    writeFileSync(grid, png('THE-RUN-GRID'));
    writeFileSync(secret, png('SECRET-TOKEN-123'));
    let swapped = false;
    const swapOnce = (path: unknown) => {
      if (swapped || path !== grid) return;
      swapped = true;
      rmSync(grid);
      symlinkSync(secret, grid);
    };
    // after the first lstat or open of the name (a check before the read), it becomes a link
    fs.lstatSync = ((...args: Parameters<typeof real.lstatSync>) => {
      const st = real.lstatSync(...args);
      swapOnce(args[0]);
      return st;
    }) as typeof fs.lstatSync;
    fs.openSync = ((...args: Parameters<typeof real.openSync>) => {
      const fd = real.openSync(...args);
      swapOnce(args[0]);
      return fd;
    }) as typeof fs.openSync;
    let html: string;
    try {
      html = readFileSync((await writeRunReport({ runDir: run })).out, 'utf8');
    } finally {
      Object.assign(fs, real);
    }
    assert.ok(swapped);
    assert.ok(!html.includes(png('SECRET-TOKEN-123').toString('base64')), 'the linked file is not embedded');
    assert.ok(html.includes(png('THE-RUN-GRID').toString('base64')), 'the file that was checked is');
  } finally {
    rmSync(secret, { force: true });
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: a run folder's config.json, metrics.jsonl, result JSONs and sub-folders that are links are named in Problems, never read; a parse error quotes none of the file", async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-links-'));
  const elsewhere = `${run}-elsewhere`;
  try {
    mkdirSync(join(elsewhere, 'ev'), { recursive: true });
    writeFileSync(join(elsewhere, 'secret.json'), '{"aws_secret_access_key": "SECRET-abc123"}');
    writeFileSync(join(elsewhere, 'secret.ini'), '[default]\naws_secret_access_key = SECRET-xyz\n');
    writeFileSync(join(elsewhere, 'ev', 'knn.json'), '{"top1": 12.5, "note": "SECRET-in-folder"}');
    writeFileSync(join(elsewhere, 'metrics.jsonl'), '{"step": 1, "SECRETMETRIC": 3}\n');
    mkdirSync(join(run, 'ev'));
    symlinkSync(join(elsewhere, 'secret.json'), join(run, 'config.json'));
    symlinkSync(join(elsewhere, 'secret.ini'), join(run, 'ev', 'knn.json'));
    symlinkSync(join(elsewhere, 'ev'), join(run, 'linked'));
    symlinkSync(join(elsewhere, 'metrics.jsonl'), join(run, 'metrics.jsonl'));
    writeFileSync(join(run, 'ev', 'broken.json'), '{"top1": 1,\n "key" "SECRET-in-bytes"}');
    writeFileSync(join(run, 'ev', 'cut.json'), '{"top1": 1, "SECRET-in-bytes": ');
    writeFileSync(join(run, 'ev', 'ini.json'), '[default]\naws_secret_access_key = SECRET-xyz\n');
    const data = readRun(run);
    assert.equal(data.config, null);
    assert.deepEqual(data.metrics, []);
    assert.deepEqual(data.evals, []);
    assert.deepEqual(data.problems.slice().sort(), [
      'config.json: a link: not read',
      'ev/broken.json: not valid JSON at line 2',
      'ev/cut.json: not valid JSON: it ends early',
      'ev/ini.json: not valid JSON',
      'ev/knn.json: a link: not read',
      'linked: a link: not read',
      'metrics.jsonl: a link: not read',
    ]);
    const html = readFileSync((await writeRunReport({ runDir: run })).out, 'utf8');
    assert.doesNotMatch(html, /SECRET|\[default\]/);
    assert.match(html, /ev\/knn\.json: a link: not read/);
  } finally {
    rmSync(run, { recursive: true, force: true });
    rmSync(elsewhere, { recursive: true, force: true });
  }
});

test('report: metrics.jsonl lines that are not metrics records are named with their line numbers in Problems, a cut-short last line mildly', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-lines-'));
  try {
    const rec = (step: number) => JSON.stringify({ step, loss: 1 / step });
    const lines = [rec(1), rec(2), 'garbage{{', '{"step":"x","loss":"NaN"}', '[1,2]', '{"step":8,"loss":1e400}', 'null', '', rec(9), '{"step":10,"lo'];
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n'));
    const data = readRun(run);
    assert.deepEqual(
      data.metrics.map((m) => m.step),
      [1, 2, 9],
    );
    assert.deepEqual(data.problems, [
      'metrics.jsonl: 5 lines are not metrics records (left out of the curves): line 3, 4, 5, 6, 7',
      'metrics.jsonl: the last line (line 10) is cut short, as a run killed while writing it leaves it; left out',
    ]);
    assert.match(renderReport(data), /<li>metrics\.jsonl: 5 lines are not metrics records/);
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
    assert.deepEqual(
      readRun(run).problems,
      ['metrics.jsonl: 6 lines are not metrics records (left out of the curves): line 3, 4, 5, 6, 7, 10'],
      'a bad line with a newline after it is not a cut-short one',
    );
    // a run still writing to the folder (its run.lock held by a live process: pid 1) is in the middle of its last line
    writeFileSync(join(run, 'metrics.jsonl'), lines.join('\n'));
    writeFileSync(join(run, 'run.lock'), JSON.stringify({ pid: 1, host: hostname(), since: '2026-12-06T00:00:00.000Z' }));
    assert.equal(readRun(run).problems[1], 'metrics.jsonl: the last line (line 10) is cut short, the live run writing to this folder is writing it; left out');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: bidi overrides and control characters in file names, config values and metric names are shown as escapes, not acted on', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-bidi-'));
  try {
    writeFileSync(join(run, 'config.json'), JSON.stringify({ options: { note: 'invoice\u202egnp.exe', tag: 'a\u2066b\u2069\u200fc\u001b[2J' } }));
    writeFileSync(join(run, 'metrics.jsonl'), JSON.stringify({ step: 1, loss: 1, 'x\u202dy': 2 }) + '\n');
    writeFileSync(join(run, 'k\u202en.json'), JSON.stringify({ top1: 50 }));
    const html = renderReport(readRun(run), { title: 'run \u202bone' });
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    assert.doesNotMatch(html, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/, 'no such character reaches the page');
    for (const s of ['invoice\\u202egnp.exe', 'a\\u2066b\\u2069\\u200fc\\x1b[2J', 'x\\u202dy', 'k\\u202en.json', 'run \\u202bone'])
      assert.ok(html.includes(s), `shows ${s}`);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('report: the command it suggests to regenerate an earlier grid quotes the run folder for the shell', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'semaim-report-quote-'));
  const run = join(parent, "it's a run; rm -rf ~");
  try {
    fakeRun(run, 5);
    mkdirSync(join(run, 'viz'));
    writeFileSync(join(run, 'viz', 'grid.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const html = readFileSync((await writeRunReport({ runDir: run })).out, 'utf8');
    const hint = /run `semaim report (.*) --images DIR` to regenerate/.exec(html.replace(/&#39;/g, "'"))?.[1];
    assert.equal(hint, `'${parent}/it'\\''s a run; rm -rf ~'`);
    assert.match(html, /grid\.png, from a checkpoint it does not record/);
    // the visualize.json beside the grid names the checkpoint that drew it (an older one than the newest, maybe)
    writeFileSync(join(run, 'viz', 'visualize.json'), JSON.stringify({ checkpoint: { path: '/runs/x/checkpoints/step-3', step: 3, sha256: 'ab' } }));
    const again = readFileSync((await writeRunReport({ runDir: run })).out, 'utf8');
    assert.match(again, /grid\.png, drawn from \/runs\/x\/checkpoints\/step-3 \(step 3\)/);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('report refuses a run folder that does not exist, or a file, as it refuses an empty one: an option error naming RUN_DIR, exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-report-missing-'));
  try {
    const { spawnSync } = await import('node:child_process');
    const file = join(dir, 'run.txt');
    writeFileSync(file, 'not a run');
    for (const [runDir, why] of [
      [join(dir, 'missing'), 'does not exist'],
      [file, 'is not a folder'],
    ]) {
      await assert.rejects(vizCommands.report.run([runDir]), (e: unknown) => e instanceof OptionError && e.key === 'runDir' && e.detail.includes(why));
      await assert.rejects(writeRunReport({ runDir }), (e: unknown) => e instanceof OptionError && e.key === 'runDir');
      const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'report', runDir], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, `semaim: option RUN_DIR: ${runDir} ${why}: give the folder of a pretrain, linprobe or finetune run (--out-dir)\n`);
    }
    assert.deepEqual(readdirSync(dir), ['run.txt']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('report refuses a folder that holds nothing of a run (an option error, exit 2) and writes nothing into it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-report-empty-'));
  try {
    writeFileSync(join(dir, 'notes.json'), '{"a": 1}');
    await assert.rejects(
      vizCommands.report.run([dir]),
      /option 'runDir': .* holds nothing of a run \(no config\.json, metrics\.jsonl, checkpoints\/ or evaluation results\)/,
    );
    assert.deepEqual(readdirSync(dir), ['notes.json']);
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'report', dir], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /option RUN_DIR: .* holds nothing of a run/);
    assert.deepEqual(readdirSync(dir), ['notes.json']);
    for (const [name, make] of [
      ['metrics.jsonl', () => writeFileSync(join(dir, 'metrics.jsonl'), '')],
      ['knn.json', () => writeFileSync(join(dir, 'knn.json'), '{"top1": 0.5}')],
    ] as const) {
      make();
      assert.equal((await writeRunReport({ runDir: dir, out: join(dir, 'r.html') })).out, join(dir, 'r.html'), `with ${name} it is a run`);
      rmSync(join(dir, name));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("report: the Evaluation table shows top-1 / top-5 in percent as the commands print them: semaim's fractions times 100, another tool's percentages as written", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-pct-'));
  try {
    fakeRun(run, 5);
    const knn = { format: 'semaim.eval/1', rows: [{ name: 'k-NN k=20', accuracy: { top1: 0.75, top5: 0.9375, n: 16 } }] };
    writeFileSync(join(run, 'knn.json'), JSON.stringify(knn));
    writeFileSync(join(run, 'theirs.json'), JSON.stringify({ top1: 41.25, top5: 88.5 }));
    writeFileSync(join(run, 'fractions.json'), JSON.stringify({ top1: 0.5 }));
    const html = renderReport(readRun(run));
    const cells = (source: string) => new RegExp(`<tr><td>${source}</td><td>([^<]*)</td><td>([^<]*)</td>`).exec(html)?.slice(1);
    assert.match(html, /<th>top-1 %<\/th><th>top-5 %<\/th>/);
    assert.deepEqual(cells('knn\\.json k-NN k=20'), ['75.00', '93.75']);
    assert.deepEqual(cells('theirs\\.json'), ['41.25', '88.5']);
    assert.deepEqual(cells('fractions\\.json'), ['50.00', '']);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: an evaluation field named like an Object.prototype member (toString, constructor) is empty in the rows that lack it, not a function's source", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-proto-'));
  try {
    writeFileSync(join(run, 'a.json'), JSON.stringify({ top1: 0.5, toString: 'x', constructor: 3 }));
    writeFileSync(join(run, 'b.json'), JSON.stringify({ top1: 0.25 }));
    const html = renderReport(readRun(run));
    assert.match(html, /<th>toString<\/th><th>constructor<\/th>/);
    assert.match(html, /<tr><td>a\.json<\/td><td>50\.00<\/td><td><\/td><td>x<\/td><td>3<\/td><\/tr>/);
    assert.match(html, /<tr><td>b\.json<\/td><td>25\.00<\/td><td><\/td><td><\/td><td><\/td><\/tr>/);
    assert.doesNotMatch(html, /native code/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: another tool's percentages are shown as written, not rounded to 4 digits (a top-1 of 99.996 % read 100)", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-pct4-'));
  try {
    writeFileSync(join(run, 'theirs.json'), JSON.stringify({ top1: 99.996, top5: 41.2549 }));
    const html = renderReport(readRun(run));
    assert.match(html, /<tr><td>theirs\.json<\/td><td>99\.996<\/td><td>41\.2549<\/td><\/tr>/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test("report: an evaluation file's other fields are shown as written, not rounded to 4 digits (an EMA decay of 0.99996 read 1)", () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-extra-'));
  try {
    writeFileSync(join(run, 'theirs.json'), JSON.stringify({ top1: 71.5, ema: 0.99996, lr: 0.000123456, seed: 1234567890123 }));
    const html = renderReport(readRun(run));
    assert.match(html, /<th>ema<\/th><th>lr<\/th><th>seed<\/th>/);
    assert.match(html, /<td>0\.99996<\/td><td>0\.000123456<\/td><td>1234567890123<\/td><\/tr>/);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('svg: values too far apart for a double (a hostile metrics.jsonl holding 1e308 and -1e308) give a chart that says so, not coordinates of NaN', () => {
  const cases: [number, number][][] = [
    [
      [0, 1e308],
      [1, -1e308],
    ],
    [
      [-1e308, 1],
      [1e308, 2],
    ],
    [[5, 1.7e308]],
  ];
  for (const points of cases) {
    const svg = lineChart([{ name: 'x', points, colour: '#000' }], { title: 'huge', xLabel: 'step' });
    assert.doesNotMatch(svg, /NaN|Infinity/, JSON.stringify(points));
    assert.match(svg, /too large to draw/);
  }
  // the largest values that can be drawn still are
  const ok = lineChart(
    [
      {
        name: 'x',
        points: [
          [0, 1e307],
          [1, -1e307],
        ],
        colour: '#000',
      },
    ],
    { title: 'large', xLabel: 'step' },
  );
  assert.doesNotMatch(ok, /NaN|Infinity|too large/);
  assert.match(ok, /<polyline /);
});

test('chart helpers refuse parameters that give no chart: smooth beta outside [0, 1), reduceSeries buckets not a positive integer, niceTicks count below 1', () => {
  const pts: [number, number][] = Array.from({ length: 2000 }, (_, i) => [i, Math.sin(i)]);
  const cases: [() => unknown, RegExp][] = [
    // every point NaN
    [() => smooth(pts, 1), /^smooth: beta must be in \[0, 1\), got 1$/],
    [() => smooth(pts, -0.5), /^smooth: beta must be in \[0, 1\), got -0\.5$/],
    [() => smooth(pts, NaN), /^smooth: beta must be in \[0, 1\), got NaN$/],
    // no points at all
    [() => reduceSeries(pts, 0), /^reduceSeries: buckets must be a positive integer, got 0$/],
    [() => reduceSeries(pts, 2.5), /^reduceSeries: buckets must be a positive integer, got 2\.5$/],
    [() => niceTicks(0, 1, 0), /^niceTicks: count must be a finite number >= 1, got 0$/],
  ];
  for (const [call, message] of cases) assert.throws(call, (e) => e instanceof RangeError && message.test(e.message), message.source);
  assert.deepEqual(
    smooth(
      [
        [0, 2],
        [1, 4],
      ],
      0,
    ),
    [
      [0, 2],
      [1, 4],
    ],
  );
  assert.equal(reduceSeries(pts, 1).length, 2);
});

test('report of a metrics file whose lines each hold a metric of their own: each record is read once per metric it holds, not once per metric of the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-report-keys-'));
  try {
    const n = 1500;
    const lines = Array.from({ length: n }, (_, i) =>
      JSON.stringify({ step: i + 1, loss: 1 / (i + 1), [`m${i}`]: i, ...(i % 500 === 7 ? { gradNorm: 'Infinity', [`x${i}`]: 'NaN' } : { gradNorm: 1 }) }),
    );
    writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n') + '\n');
    const run = readRun(dir);
    assert.deepEqual(
      run.problems.filter((p) => /not finite/.test(p)),
      [
        'the gradient norm was not finite at steps 8, 508, 1008 (metrics.jsonl: gradNorm "Infinity")',
        'x1007 was not finite at step 1008 (metrics.jsonl: x1007 "NaN")',
        'x507 was not finite at step 508 (metrics.jsonl: x507 "NaN")',
        'x7 was not finite at step 8 (metrics.jsonl: x7 "NaN")',
      ],
    );
    const undated = (html: string) => html.replace(/generated [^<]*/, '');
    const plain = undated(renderReport(run));
    // the same records, counting the reads of their fields
    let reads = 0;
    const counted = {
      ...run,
      metrics: run.metrics.map(
        (m) =>
          new Proxy(m, {
            get(t, key, r) {
              reads++;
              return Reflect.get(t, key, r) as unknown;
            },
          }),
      ),
    };
    const html = undated(renderReport(counted));
    assert.equal(html, plain);
    assert.equal((html.match(/<figure>/g) ?? []).length, 2 + n + 3, 'loss, gradNorm, a chart per m<i> and per x<i>');
    assert.ok(reads < 50 * n, `${reads} reads of the fields of ${n} records`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writeRunReport checks its job as `semaim report` checks its flags: a wrong value or an unknown key is an OptionError naming it, before any file is written', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-report-job-'));
  try {
    fakeRun(run);
    const notes = join(run, 'notes.html');
    writeFileSync(notes, 'my notes');
    const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
    // 'false' was truthy: the file that is no report was replaced
    await assert.rejects(writeRunReport({ runDir: run, out: notes, overwrite: 'no!' as unknown as boolean }), refused('overwrite', /expected true or false/));
    await assert.rejects(writeRunReport({ runDir: run, out: notes, overwrite: 'false' as unknown as boolean }), refused('out', /is not a semaim report/));
    assert.equal(readFileSync(notes, 'utf8'), 'my notes');
    // a misspelt key was ignored: the report went to <runDir>/report.html
    await assert.rejects(
      writeRunReport({ runDir: run, output: join(run, 'r.html') } as never),
      refused('output', /unknown option .*known: runDir, out, overwrite/),
    );
    // a missing runDir was node's TypeError from statSync
    await assert.rejects(writeRunReport({ run_dir: run } as never), refused('run_dir', /unknown option; did you mean 'runDir'\?/));
    await assert.rejects(writeRunReport({} as never), refused('runDir', /is required/));
    await assert.rejects(writeRunReport({ runDir: run, title: '' }), refused('title', /must not be empty/));
    await assert.rejects(writeRunReport({ runDir: run, visualize: {} as never }), refused('visualize', /expected the figure's job/));
    assert.deepEqual(readdirSync(run).sort(), ['config.json', 'metrics.jsonl', 'notes.html']);
    const r = await writeRunReport({ runDir: run, overwrite: 'false' as unknown as boolean, visualize: undefined });
    assert.equal(r.out, join(run, 'report.html'));
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});
