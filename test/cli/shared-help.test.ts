// An option that several commands take means the same everywhere, and --help says so in the same words:
// object-start's --precision left out when fp16 is chosen and its --num-workers what 0 does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commands } from '../../src/cli/commands';

const SAID: [key: string, phrase: string][] = [
  ['precision', 'auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'],
  ['numWorkers', 'one per core but one, at most 8; 0 = on the main thread'],
];

test("every command's --precision and --num-workers help states what auto and 0 do", () => {
  for (const [key, phrase] of SAID) {
    const taking = Object.entries(commands).filter(([, c]) => key in c.options);
    assert.ok(
      taking.some(([name]) => name === 'object-start'),
      `object-start takes ${key}`,
    );
    for (const [name, c] of taking) assert.ok(c.options[key].help.includes(phrase), `${name} --${key}: '${c.options[key].help}' lacks '${phrase}'`);
  }
});
