// What every command does before its job (src/cli/command.ts): an --out-dir that cannot be a folder is an
// option error naming --out-dir before the command's own checks and before any work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { OptionError } from '../../src/util/options';

test('an --out-dir that is a file, or has a dangling link on the way, is refused naming --out-dir before the checkpoint is looked at', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-command-'));
  try {
    const file = join(root, 'file.txt');
    writeFileSync(file, 'x');
    const dangling = join(root, 'gone');
    symlinkSync(join(root, 'nowhere'), dangling);
    const missing = join(root, 'missing-run'); // the checkpoint's own check would fail too, naming --checkpoint
    for (const [outDir, why] of [
      [file, /file\.txt cannot be the output folder: .*file\.txt exists and is not a folder/],
      [join(dangling, 'run'), /cannot be the output folder: .*gone is a symbolic link to .*nowhere, which does not exist/],
    ] as const) {
      for (const name of ['knn', 'linprobe', 'finetune', 'segprobe']) {
        await assert.rejects(
          commands[name].run(['--checkpoint', missing, '--out-dir', outDir]),
          (e: unknown) => e instanceof OptionError && e.key === 'outDir' && why.test(e.message),
          `${name} --out-dir ${outDir}`,
        );
      }
    }
    assert.equal(existsSync(join(root, 'nowhere')), false, 'nothing made');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
