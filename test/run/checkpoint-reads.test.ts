// Saving and resuming a checkpoint read its files no more than needed (counted by the bytes the process
// read, /proc/self/io's rchar): a save hashes the bytes as it writes them (it read both files back, a
// quarter of a 2 GB ViT-B save), and a resume verifies the newest checkpoint once (it hashed it twice).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { CheckpointManager } from '../../src/run/checkpoints';
import { sha256File, readCheckpointState } from '../../src/io/checkpoint';

const readBytes = (): number => Number(/^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

test(
  'a checkpoint save reads nothing back; a resume reads the newest checkpoint twice (verify, load), not three times',
  { skip: !existsSync('/proc/self/io') },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-ckpt-reads-'));
    const MB = 1 << 20;
    const model = new Map([
      ['w', torch.randn([4 * MB])],
      ['t', torch.randn([1024, 2048]).T], // a view: written through a contiguous copy
    ]);
    const extra = new Map([['m', torch.randn([8 * MB])]]);
    try {
      const bytes = (4 * MB + 2 * MB + 8 * MB) * 4;
      let before = readBytes();
      const saved = new CheckpointManager(dir).save(3, { model, extra, state: { epoch: 0, batch: 0 } });
      assert.ok(readBytes() - before < MB, `the save read ${readBytes() - before} bytes`);
      const files = readCheckpointState(saved).files as Record<string, string>;
      for (const f of ['model.safetensors', 'optimizer.safetensors'])
        assert.equal(files[f], sha256File(join(saved, f)), `${f}: the recorded hash is the file's`);
      before = readBytes();
      const loaded = new CheckpointManager(dir).loadLatest()!;
      const read = readBytes() - before;
      assert.ok(read > 1.9 * bytes && read < 2.5 * bytes, `the resume read ${(read / bytes).toFixed(2)}× the checkpoint`);
      assert.deepEqual(loaded.model.get('t')!.toFloat32Array(), model.get('t')!.contiguous().toFloat32Array());
      assert.deepEqual(loaded.extra.get('m')!.toFloat32Array().subarray(0, 8), extra.get('m')!.toFloat32Array().subarray(0, 8));
      for (const t of [...loaded.model.values(), ...loaded.extra.values()]) t.dispose();
    } finally {
      for (const t of [...model.values(), ...extra.values()]) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
