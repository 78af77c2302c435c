// bench/torch-server.ts: the PyTorch side of bench:engine and bench:eval, as its callers meet it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TorchServer } from '../../bench/torch-server';

test('bench TorchServer: a Python that cannot start is an error naming it and SEMAIM_PYTHON, not a crash on the spawn error', async () => {
  // Before: the 'error' event had no listener, so SEMAIM_PYTHON=/nonexistent ended the benchmark with Node's stack trace.
  const py = new TorchServer('/nonexistent/semaim-python3', 'bench/engine_torch.py', ['--serve']);
  await assert.rejects(
    py.ask({ op: 'info' }),
    /\/nonexistent\/semaim-python3 bench\/engine_torch\.py: cannot start the PyTorch side \(.*ENOENT\); set SEMAIM_PYTHON/,
  );
  py.close();
});

test('bench TorchServer: answers line by line; a server that ended says so with its stderr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-torch-server-'));
  try {
    const script = join(dir, 'server.js');
    writeFileSync(
      script,
      `require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
         const r = JSON.parse(l);
         if (r.op === 'die') { process.stderr.write('told to die'); process.exit(3); }
         console.log(JSON.stringify({ echo: r.op }));
       });`,
    );
    const server = new TorchServer(process.execPath, script, []);
    assert.deepEqual(await server.ask({ op: 'info' }), { echo: 'info' });
    await assert.rejects(server.ask({ op: 'die' }), /server\.js exited:\ntold to die/);
    server.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
