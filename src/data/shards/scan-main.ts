// Child-process entry of the shard index scan (shard-index.ts scanShardsSync): reads a JSON list
// of shard paths on stdin, writes their index entries as JSON on stdout, progress on stderr.

import { readFileSync } from 'node:fs';
import { scanShards } from './shard-index';

async function main(): Promise<void> {
  const paths = JSON.parse(readFileSync(0, 'utf8')) as string[];
  let last = -Infinity;
  const entries = await scanShards(paths, (done, total) => {
    const now = performance.now(); // (a wall clock stepped back, NTP, hid the lines for that long)
    if (now - last > 2000 || done === total) {
      last = now;
      process.stderr.write(`data: indexed ${done}/${total} shard(s)\n`);
    }
  });
  process.stdout.write(JSON.stringify(entries));
}

main().catch((e) => {
  process.stderr.write(`shard scanner: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
