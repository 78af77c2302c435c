// Child-process entry of the shard index scan (shard-index.ts scanShardsSync): reads a JSON list
// of shard paths on stdin, writes their index entries as JSON on stdout, progress on stderr.

import { readFileSync } from 'node:fs';
import { scanShards } from './shard-index';

/** How often the scan looks for the process that started it. */
const PARENT_CHECK_MS = 500;

async function main(): Promise<void> {
  // a parent killed meanwhile (kill -9, whose spawnSync waits for this scan) has no use for it: it ends
  // too, rather than read every shard on for nobody and then fail writing to the closed pipe
  // (the pid scanShardsSync passes: a parent killed while this process started left it to init already)
  const parent = Number(process.env.SEMAIM_SCAN_PARENT) || process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, PARENT_CHECK_MS).unref();
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
