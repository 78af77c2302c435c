// An export over an earlier one (--overwrite) on a disk that fills: the weights and the config that
// describes them stay a pair. The config was written after the weights, so a full disk there left new
// weights beside the old config, which loaders read first (another head count with the same shapes:
// a silently different model).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportEncoder, exportOnnx } from '../../src/export';
import { SMALL, smallEncoder, writeExportedEncoder } from './helpers';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Runs `fn` with the temporary file of any name matching `re` failing as on a full disk. */
async function fullAt<T>(re: RegExp, fn: () => Promise<T>): Promise<T> {
  const fs = require('node:fs') as typeof import('node:fs');
  const writeFileSync = fs.writeFileSync;
  fs.writeFileSync = ((...args: Parameters<typeof writeFileSync>) => {
    if (re.test(String(args[0]))) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    return writeFileSync(...args);
  }) as typeof fs.writeFileSync;
  try {
    return await fn();
  } finally {
    fs.writeFileSync = writeFileSync;
  }
}

test('a full disk at the config of an export over an earlier one leaves the earlier weights and config, a pair, and no temporary file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-export-full-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = writeExportedEncoder(join(dir, 'a'), smallEncoder(3));
  const b = writeExportedEncoder(join(dir, 'b'), smallEncoder(4, { ...SMALL, numHeads: 2 }), { ...SMALL, numHeads: 2 }); // the same shapes
  const out = join(dir, 'out');
  await exportEncoder(a, join(out, 'enc'));
  const files = [join(out, 'enc.safetensors'), join(out, 'enc.json')];
  const pair = files.map(sha);
  await assert.rejects(() => fullAt(/enc\.json\.tmp-/, () => exportEncoder(b, join(out, 'enc'), { overwrite: true })), /cannot write .*enc\.json: ENOSPC/);
  assert.deepEqual(files.map(sha), pair, 'weights and config as the first export wrote them');

  await exportOnnx(a, join(out, 'onnx-a'), { dtype: 'float32', attention: false });
  const onnx = [join(out, 'onnx-a', 'onnx', 'model.onnx'), join(out, 'onnx-a', 'config.json'), join(out, 'onnx-a', 'preprocessor_config.json')];
  const before = onnx.map(sha);
  await assert.rejects(
    () => fullAt(/onnx-a\/config\.json\.tmp-/, () => exportOnnx(b, join(out, 'onnx-a'), { dtype: 'float32', attention: false, overwrite: true })),
    /cannot write .*config\.json: ENOSPC/,
  );
  assert.deepEqual(onnx.map(sha), before, 'model.onnx and its configs as the first export wrote them');
  assert.deepEqual(readdirSync(out).sort(), ['enc.json', 'enc.safetensors', 'onnx-a']);
  assert.deepEqual(readdirSync(join(out, 'onnx-a')).sort(), ['config.json', 'onnx', 'preprocessor_config.json']);
  assert.deepEqual(readdirSync(join(out, 'onnx-a', 'onnx')), ['model.onnx']);
});
