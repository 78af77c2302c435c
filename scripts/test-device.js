// Preloaded into every test process by scripts/run-tests.js when SEMAIM_TEST_DEVICE is set (e.g. cuda):
// tensors created without a device go there, so the engine and model tests run on it.
'use strict';
const { join } = require('node:path');
const torch = require(join(__dirname, '..', 'dist', 'src', 'torch'));
try {
  torch.setDefaultDevice(process.env.SEMAIM_TEST_DEVICE);
} catch (e) {
  console.error(`SEMAIM_TEST_DEVICE=${process.env.SEMAIM_TEST_DEVICE}: cannot create tensors there: ${String(e.message).split('\n')[0].slice(0, 200)}`);
  process.exit(1);
}
