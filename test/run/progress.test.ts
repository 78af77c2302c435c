// The progress line: in a log (not a terminal, or TERM=dumb) at most one line every few seconds however
// often it is updated; on a resumed loop the ETA counts only what this process has done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Progress, perSecond } from '../../src/run/progress';
import { captureStderr } from '../output';
import { besideProgress, clearProgressLine, markProgressLine, progressLineShown, stderrLine } from '../../src/util/console-line';

function stream(isTTY: boolean): { out: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const out = { isTTY, write: (s: string) => chunks.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { out, text: () => chunks.join('') };
}

/** Runs fn with TERM set to `value`, then puts it back. */
function withTerm(value: string, fn: () => void): void {
  const term = process.env.TERM;
  process.env.TERM = value;
  try {
    fn();
  } finally {
    if (term === undefined) delete process.env.TERM;
    else process.env.TERM = term;
  }
}

test('in a log, one line per few seconds and the last one, however often it is updated', () => {
  const log = stream(false);
  const p = new Progress('pretrain', 1000, log.out, 5);
  for (let i = 1; i <= 1000; i++) p.update(i, { loss: 1 / i });
  const lines = log.text().trim().split('\n');
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[1], /^pretrain \[#{20}\] 1000\/1000 \| loss 0\.001000 \| elapsed/);
  assert.ok(!log.text().includes('\u001b'));
});

test('TERM=dumb is a log, not a terminal to redraw', () => {
  withTerm('dumb', () => {
    const t = stream(true);
    const p = new Progress('x', 10, t.out, 5);
    for (let i = 1; i <= 10; i++) p.update(i);
    assert.ok(!t.text().includes('\u001b') && !t.text().includes('\r'));
    assert.equal(t.text().trim().split('\n').length, 2);
  });
});

test('a resumed loop estimates the time left from its own rate, not from the steps done before it started', () => {
  const log = stream(false);
  const p = new Progress('pretrain', 100_000, log.out, 0);
  p.resumeFrom(50_000);
  p.update(50_001);
  assert.match(log.text(), /ETA --:--\n$/, 'no rate before a second update');
  const until = Date.now() + 500;
  while (Date.now() < until) {
    /* 10 steps in half a second: 20 steps/s */
  }
  p.update(50_011);
  const eta = /ETA (?:(\d+):)?(\d+):(\d+)/.exec(log.text());
  assert.ok(eta, log.text());
  const minutes = Number(eta[1] ?? 0) * 60 + Number(eta[2]);
  assert.ok(minutes >= 30 && minutes <= 45, `49,990 steps at ~20/s is ~42 minutes, got ${eta[0]}`);
});

test('a resume after updates measures the rate afresh: no ETA before its second update', () => {
  const log = stream(false);
  const p = new Progress('pretrain', 100_000, log.out, 0);
  p.update(10);
  p.update(20);
  p.resumeFrom(50_000);
  p.update(50_001);
  assert.match(log.text(), /ETA --:--\n$/, 'no rate from one update after the resume');
});

test('an ETA over an hour shows its hours; the last line reads ETA 0:00 with a full bar, also without a rate yet or past the total', () => {
  const log = stream(false);
  const p = new Progress('pretrain', 1_000_000, log.out, 0);
  p.update(1);
  const until = Date.now() + 200;
  while (Date.now() < until) {
    /* 10 steps in a fifth of a second: ~50 steps/s, ~5.5 hours left */
  }
  p.update(11);
  const eta = /ETA (\d+):(\d\d):(\d\d)\n$/.exec(log.text());
  assert.ok(eta, log.text());
  assert.ok(Number(eta[1]) >= 2 && Number(eta[1]) <= 12, `hours, minutes and seconds: ${eta[0]}`);
  for (const done of [10, 12]) {
    const end = stream(false);
    new Progress('eval', 10, end.out, 5).update(done, { rate: undefined }); // the first update is the last: no rate measured
    assert.match(end.text(), new RegExp(`^eval \\[#{20}\\] ${done}/10 \\| elapsed \\d+:\\d\\d ETA 0:00\n$`));
  }
});

test("counts print as integers ('skipped 1', was 'skipped 1.000'; 1500 was '1.50e+3'), measures with 4 digits", () => {
  const log = stream(false);
  const p = new Progress('embed', 10, log.out, 0);
  p.update(10, { skipped: 1, seen: 1500, loss: 0.5, lr: 2.5e-5 });
  assert.match(log.text(), /\| skipped 1 \| seen 1500 \| loss 0\.5000 \| lr 2\.50e-5 \|/);
});

test('on a terminal the line fits its width (a wrapped line leaves one row per redraw): fields that do not fit are left out, last first', () => {
  withTerm('xterm', () => {
    const t = stream(true);
    (t.out as { columns?: number }).columns = 80;
    const p = new Progress('pretrain', 1000, t.out, 5);
    p.update(10, { loss: 1.2345, 'img/s': 123.4, lr: 1.5e-4, 'grad norm': 0.75 });
    const redraws = t
      .text()
      .split('\r\u001b[K')
      .filter((x) => x);
    assert.equal(redraws.length, 1);
    const line = redraws[0];
    assert.ok(line.length <= 79, `${line.length} characters: ${line}`);
    assert.match(
      line,
      /^pretrain \[.{10}\] 10\/1000 \| loss 1\.234 \| img\/s 123\.4 \| ETA (\d+:\d\d|--:--)$/,
      'a narrower bar without the elapsed time, the first fields and the ETA kept',
    );
    (t.out as { columns?: number }).columns = 30;
    p.update(11, { loss: 1 });
    assert.equal([...t.text().split('\r\u001b[K').pop()!].length, 29, 'cut at the width when even the bare line does not fit');
  });
});

test('a message written under a progress line on a terminal clears it first, and the line is drawn again below it', () => {
  withTerm('xterm', () => {
    const t = stream(true);
    const p = new Progress('pretrain', 10, t.out, 5);
    p.update(1);
    assert.ok(progressLineShown(t.out));
    const message = `${clearProgressLine(t.out)}data: skipping a.jpg: truncated JPEG header\n`;
    t.out.write(message);
    assert.equal(clearProgressLine(t.out), '', 'cleared once');
    p.update(2);
    p.done();
    const rows = t
      .text()
      .split('\n')
      .map((r) => r.replaceAll('\r\u001b[K', '<clear>'));
    assert.match(rows[0], /pretrain \[.*\] 1\/10 .*<clear>data: skipping a\.jpg: truncated JPEG header$/, 'the warning replaced the progress row');
    assert.match(rows[1], /^<clear>pretrain \[.*\] 2\/10 /);
    assert.deepEqual(rows.slice(2), [''], 'done() ends the redrawn line once');
    // after the line ended, a message needs no clearing; done() after a message adds no empty line
    assert.equal(clearProgressLine(t.out), '');
    const u = stream(true);
    const q = new Progress('knn', 4, u.out, 5);
    q.update(1);
    u.out.write(`${clearProgressLine(u.out)}warning\n`);
    q.done();
    assert.ok(u.text().endsWith('warning\n'), JSON.stringify(u.text()));
  });
});

/** Runs fn with a progress line marked drawn on stderr, which is captured. */
async function underProgressLine(fn: () => void): Promise<string> {
  try {
    markProgressLine(process.stderr, true);
    return (await captureStderr(async () => fn())).stderr;
  } finally {
    markProgressLine(process.stderr, false);
  }
}

test('stderrLine writes on a line of its own when a progress line is drawn on stderr (the data warnings were glued to it)', async () => {
  const written = await underProgressLine(() => {
    stderrLine('data: skipping x.jpg');
    stderrLine('data: skipping y.jpg');
  });
  assert.equal(written, '\r\u001b[Kdata: skipping x.jpg\ndata: skipping y.jpg\n');
});

test('a rate field is left out in the first fifth of a second (one batch over ~0 ms showed 8000000000.0 img/s), then counts per second', () => {
  assert.equal(perSecond(64, performance.now()), undefined);
  const rate = Number(perSecond(100, performance.now() - 2000));
  assert.ok(rate > 45 && rate <= 50, String(rate));
});

test("a caller's own log (the jobs' hooks.log) clears a progress line drawn on stderr before its message", async () => {
  const logged: string[] = [];
  const written = await underProgressLine(() => {
    const log = besideProgress((l) => logged.push(l));
    log('stopping on request at step 3');
    log('again');
  });
  assert.equal(written, '\r\u001b[K');
  assert.deepEqual(logged, ['stopping on request at step 3', 'again']);
});

test('a wall clock stepped an hour forward (NTP) between two updates changes neither the elapsed time, nor the rate and ETA, nor perSecond: durations are read from the monotonic clock', () => {
  const log = stream(false);
  const p = new Progress('pretrain', 100, log.out, 0);
  const realNow = Date.now;
  try {
    p.update(1);
    const start = performance.now();
    const later = realNow() + 3_600_000;
    Date.now = () => later;
    p.update(2);
    const rate = perSecond(10, start - 1000); // 10 images in a second
    Date.now = realNow;
    const last = log.text().trim().split('\n').at(-1)!;
    assert.match(last, /elapsed 0:0\d ETA /, last);
    assert.doesNotMatch(last, /ETA \d+:\d\d:\d\d$/, `an hour per step: ${last}`);
    assert.ok(rate !== undefined && Number(rate) > 5 && Number(rate) <= 10, `perSecond ${rate}`);
  } finally {
    Date.now = realNow;
  }
});
