// metrics.jsonl at the length of an 800-epoch run: a resume drops the lines after its checkpoint and
// takes up the loss curve reading the file's ends, not the whole file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetricsLog, countLines, linesFromEnd, linesFromStart, lossEnds, readMetrics, readMetricsLines } from '../../src/run/metrics';

/** The lines the resume keeps, by the rule read over the whole file. */
function keptByRule(text: string, step: number, lossLinesAt?: number): string {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .filter((l) => {
      try {
        const r = JSON.parse(l) as { step?: number; loss?: unknown };
        return !(r.step! > step || (lossLinesAt !== undefined && r.step === lossLinesAt && 'loss' in r));
      } catch {
        return true;
      }
    })
    .map((l) => l + '\n')
    .join('');
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-metrics-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const line = (r: Record<string, unknown>) => JSON.stringify({ time: '2026-01-01T00:00:00.000Z', ...r }) + '\n';

test('truncateAfter drops the lines after the checkpoint and its off-cadence loss line, keeping an evaluation of that step', () => {
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    let text = '';
    for (let s = 10; s <= 90; s += 10) text += line({ step: s, loss: 1 / s, note: 'ü' });
    text += line({ step: 95, loss: 0.5 }) + line({ step: 95, top1: 40 }) + line({ step: 100, loss: 0.4 }) + '\n' + line({ step: 110, loss: 0.3 });
    text += '{"step":12'; // a torn last line: kept as it is
    for (const [step, at] of [
      [95, 95],
      [95, undefined],
      [100, undefined],
      [50, undefined],
      [5, undefined],
      [200, undefined],
    ] as [number, number | undefined][]) {
      writeFileSync(path, text);
      const expected = keptByRule(text, step, at);
      const dropped = new MetricsLog(path).truncateAfter(step, at === undefined ? {} : { lossLinesAt: at });
      const got = readFileSync(path, 'utf8');
      if (dropped === 0) assert.equal(got, text, `step ${step}: nothing dropped, the file is left as it was`);
      else assert.equal(got, expected, `step ${step}, lossLinesAt ${at}`);
      assert.equal(dropped, text.split('\n').filter((l) => l.trim()).length - expected.split('\n').filter((l) => l.trim()).length);
    }
  });
});

test('linesFromEnd gives the lines in reverse with their byte offsets, across chunk boundaries and multi-byte characters', () => {
  withDir((dir) => {
    const path = join(dir, 'm.jsonl');
    const text = 'aé\n\nbb€€\nc\n  \ndddd\n\n';
    writeFileSync(path, text);
    const bytes = Buffer.from(text);
    for (const chunk of [1, 2, 3, 5, 64]) {
      const got = [...linesFromEnd(path, chunk)];
      assert.deepEqual(
        got.map((g) => g.line),
        ['dddd', 'c', 'bb€€', 'aé'],
        `chunk ${chunk}`,
      );
      for (const g of got) assert.equal(bytes.toString('utf8', g.start, g.start + Buffer.byteLength(g.line)), g.line);
    }
  });
});

test('linesFromEnd reads a line of many chunks whole, with the lines around it', () => {
  withDir((dir) => {
    const path = join(dir, 'm.jsonl');
    const long = `{"step":2,"note":"${'x€'.repeat(300_000)}"}`;
    writeFileSync(path, `{"step":1}\n${long}\n{"step":3}`);
    for (const chunk of [7, 4096, 1 << 16]) {
      const got = [...linesFromEnd(path, chunk)];
      assert.deepEqual(
        got.map((g) => [g.line.length, g.start]),
        [
          [10, 11 + Buffer.byteLength(long) + 1],
          [long.length, 11],
          [10, 0],
        ],
        `chunk ${chunk}`,
      );
      assert.equal(got[1].line, long);
    }
  });
});

test('linesFromStart numbers every line from 1 across chunk boundaries and multi-byte characters, and marks an unterminated last line', () => {
  withDir((dir) => {
    const path = join(dir, 'm.jsonl');
    writeFileSync(path, 'aé\n\nbb€€\nc\n  \ndddd');
    for (const chunk of [1, 2, 3, 5, 64]) {
      const got = [...linesFromStart(path, { chunk })];
      assert.deepEqual(
        got.map((g) => [g.number, g.line, g.unterminated]),
        [
          [1, 'aé', false],
          [2, '', false],
          [3, 'bb€€', false],
          [4, 'c', false],
          [5, '  ', false],
          [6, 'dddd', true],
        ],
        `chunk ${chunk}`,
      );
    }
  });
});

test('countLines counts a last line without a newline (a run killed mid-line) as a line, across the read buffer too', () => {
  withDir((dir) => {
    const path = join(dir, 'm.jsonl');
    for (const [text, n] of [
      ['', 0],
      ['\n', 1],
      ['a', 1],
      ['a\nb', 2],
      ['a\nb\n', 2],
      ['a\n\nb', 3],
    ] as const) {
      writeFileSync(path, text);
      assert.equal(countLines(path), n, JSON.stringify(text));
    }
    const long = 'x'.repeat(99) + '\n';
    writeFileSync(path, long.repeat(20_000) + '{"step":1');
    assert.equal(countLines(path, { followLinks: false }), 20_001);
  });
});

test('readMetricsLines names the unreadable lines by number and a cut-short last line apart, whatever the file size', () => {
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    let text = '';
    for (let s = 1; s <= 3000; s++) text += s === 1500 ? 'garbage\n\n' : line({ step: s, loss: 1 + 1 / s, note: 'é€' });
    writeFileSync(path, text + '{"step": 30');
    const m = readMetricsLines(path);
    assert.equal(m.records.length, 2999);
    assert.deepEqual(m.unreadable, [1500]);
    assert.equal(m.cutShort, 3002);
    assert.equal(m.lines[1499], 1502, 'the line after the blank one');
    assert.equal(m.records[2998].note, 'é€');
    writeFileSync(path, text + '[1]\n');
    assert.deepEqual(readMetricsLines(path).unreadable, [1500, 3002]);
    assert.equal(readMetricsLines(path).cutShort, null);
  });
});

test('a resume reads the ends of a long metrics file, not all of it', () => {
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    let text = line({ step: 1, loss: 2.5 });
    for (let s = 2; s <= 20000; s++) text += line({ step: s, loss: 1 + 1 / s, lr: 1e-4, gradNorm: 1, imgPerSec: 100 });
    writeFileSync(path, text);
    const fs = require('node:fs') as typeof import('node:fs');
    const { readSync, readFileSync: readWhole } = fs;
    let bytes = 0;
    fs.readSync = ((...a: Parameters<typeof readSync>) => {
      const n = readSync(...a);
      bytes += n;
      return n;
    }) as typeof readSync;
    fs.readFileSync = ((...a: Parameters<typeof readWhole>) => {
      const r = readWhole(...a);
      bytes += r.length;
      return r;
    }) as typeof readWhole;
    try {
      assert.equal(new MetricsLog(path).truncateAfter(19990), 10);
      assert.deepEqual(lossEnds(path), { first: 2.5, last: 1 + 1 / 19990 });
    } finally {
      fs.readSync = readSync;
      fs.readFileSync = readWhole;
    }
    assert.ok(text.length > 2_000_000);
    assert.ok(bytes < 300_000, `read ${bytes} bytes of a ${text.length}-byte file`);
    const rows = readMetrics(path);
    assert.equal(rows.length, 19990);
    assert.equal(rows[rows.length - 1].step, 19990);
  });
});

test('lossEnds: null without loss lines; skips lines that are not records', () => {
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    assert.equal(lossEnds(path), null);
    writeFileSync(path, line({ step: 1, top1: 3 }));
    assert.equal(lossEnds(path), null);
    writeFileSync(
      path,
      '7\n' + line({ step: 1, top1: 3 }) + line({ step: 2, loss: 0.7 }) + line({ step: 3, loss: 0.6 }) + line({ step: 3, top1: 9 }) + '{"loss":',
    );
    assert.deepEqual(lossEnds(path), { first: 0.7, last: 0.6 });
  });
});

test('has(step, key): a key logged at that step, looked for from the end, whatever lines of later or the same step follow', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-metrics-has-'));
  try {
    const log = new MetricsLog(join(dir, 'metrics.jsonl'));
    assert.equal(log.has(1, 'loss'), false, 'no file yet');
    for (const r of [
      { step: 1, loss: 2 },
      { step: 2, loss: 1.5 },
      { step: 2, knn_top1: 0.1 },
      { step: 3, loss: 1 },
    ])
      log.write(r);
    assert.equal(log.has(2, 'knn_top1'), true);
    assert.equal(log.has(2, 'loss'), true);
    assert.equal(log.has(3, 'loss'), true);
    assert.equal(log.has(1, 'knn_top1'), false);
    assert.equal(log.has(4, 'loss'), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a record written after a cut-short last line (a run killed mid-line) starts a line of its own', () => {
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, line({ step: 1, loss: 2 }) + '{"time":"2026-01-01T00:00:00.000Z","st');
    const log = new MetricsLog(path);
    assert.equal(log.truncateAfter(1), 0); // (a resume at step 1: the torn line is kept as it is)
    log.write({ step: 2, loss: 1.5 });
    log.write({ step: 3, loss: 1 });
    const r = readMetricsLines(path);
    assert.deepEqual(
      r.records.map((x) => x.step),
      [1, 2, 3],
    );
    assert.deepEqual(r.unreadable, [2]);
  });
});

test('truncateAfter flushes the shortened file to the disk (fsync) before renaming it over metrics.jsonl', () => {
  // the rename was not preceded by an fsync: a power cut after it could leave metrics.jsonl empty or torn
  withDir((dir) => {
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, line({ step: 10, loss: 1 }) + line({ step: 20, loss: 0.5 }));
    const fs = require('node:fs') as { fsyncSync: (fd: number) => void; renameSync: (a: string, b: string) => void }; // the module object metrics calls through
    const { fsyncSync, renameSync } = fs;
    let synced = 0;
    let syncedAtRename = -1;
    fs.fsyncSync = (fd: number) => (synced++, fsyncSync(fd));
    fs.renameSync = (a: string, b: string) => ((syncedAtRename = synced), renameSync(a, b));
    try {
      assert.equal(new MetricsLog(path).truncateAfter(10), 1);
    } finally {
      fs.fsyncSync = fsyncSync;
      fs.renameSync = renameSync;
    }
    assert.ok(syncedAtRename >= 1, `fsyncs before the rename: ${syncedAtRename}`);
    assert.equal(readFileSync(path, 'utf8'), line({ step: 10, loss: 1 }));
  });
});
