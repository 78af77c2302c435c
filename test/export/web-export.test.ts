// `semaim export --format web` (src/export/web-export.ts): what it refuses before any file is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportWeb } from '../../src/export/web-export';
import { SMALL, smallEncoder, writeExportedEncoder } from './helpers';

test('export --format web refuses an encoder that does not take RGB images: the page feeds every image as 3 channels', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-web-chans-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // a one-channel encoder (timm in_chans=1): the page's [1, 3, H, W] input failed in onnxruntime on every image
  const grey = { ...SMALL, inChans: 1 };
  const enc = writeExportedEncoder(join(dir, 'grey'), smallEncoder(2, grey), grey);
  const out = join(dir, 'web');
  await assert.rejects(exportWeb(enc, out), /the page feeds RGB images \(3 channels\); .*grey.*encoder\.safetensors takes 1 channel/);
  assert.equal(existsSync(out), false, 'no file written');
});
