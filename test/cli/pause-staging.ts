// Loaded with --require into a command the stop tests signal: the first time the command writes a file
// whose name matches SEMAIM_TEST_PAUSE_AT (a staged file), it says so on stderr and blocks for 0.6 s,
// so that the test's signal arrives while the command's files are being staged.
import fs from 'node:fs';

const at = new RegExp(process.env.SEMAIM_TEST_PAUSE_AT ?? '$^');
const writeFileSync = fs.writeFileSync;
let paused = false;
fs.writeFileSync = ((...args: Parameters<typeof writeFileSync>) => {
  if (!paused && at.test(String(args[0]))) {
    paused = true;
    process.stderr.write(`pausing at ${String(args[0])}\n`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600);
  }
  return writeFileSync(...args);
}) as typeof fs.writeFileSync;
