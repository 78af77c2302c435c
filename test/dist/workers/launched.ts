// A worker of test/dist/launch.test.ts, started by the launcher or by torchrun.
//   ok        one all-reduce of (rank + 1); prints {rank, worldSize, localRank (the environment's and the group's), sum}
//   crash     rank 1 throws after the first collective; the others keep all-reducing
//   loop      all-reduces every 50 ms for up to 60 s, ignoring SIGTERM (the test kills one worker)
//   sigterm   like loop, but exits 0 on SIGTERM after printing it
//   sigterm-fails  like sigterm, but on SIGTERM rank 1 fails (exit 1, a checkpoint it cannot write) and rank 0 exits 143
//   stall     like loop with a 3 s collective timeout and SIGTERM's default action (the test stops rank 1 with SIGSTOP)
//   stopped   a run stopped by a signal that reached rank 1 alone: rank 1 exits with code 130 at once, rank 0
//             reports the stop 1.5 s later ({rank, stopped}) and exits with 130 too (SIGTERM's default action)
//   told      rank 0 cannot go on (3 workers): it has told the others why, they print "rank 0 of 3 could not
//             start" and end (rank 2 at once with code 1, rank 1 only when signalled), and rank 0 exits
//             with code 2 after 1 s, ignoring SIGTERM meanwhile
//   told-dies like told, but rank 0 keeps SIGTERM's default action (a SIGTERM while it exits kills it)
import * as torch from '../../../src/torch';
import * as dist from '../../../src/dist';

const scenario = process.argv[2] ?? 'ok';
const out = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };

async function loop(g: dist.ProcessGroup): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    await g.allReduce(torch.ones([4]), 'sum');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const env = dist.readDistEnv();
  const g = await dist.initProcessGroup({ timeoutMs: scenario === 'stall' ? 3000 : 60_000 });
  const t = torch.tensor([g.rank + 1], { dtype: 'float64' });
  await g.allReduce(t, 'sum');
  out({ rank: g.rank, worldSize: g.worldSize, localRank: env?.localRank, groupLocalRank: g.localRank, agentStore: env?.agentStore !== null, sum: t.item(), pid: process.pid });
  if (scenario === 'crash') {
    if (g.rank === 1) {
      process.stdout.write('rank 1 is about to crash\n');
      throw new Error('deliberate crash on rank 1');
    }
    await loop(g);
  } else if (scenario === 'loop') {
    // Ignores the launcher's SIGTERM: this worker must stop on its own, from the collective's error.
    process.on('SIGTERM', () => { process.stderr.write('SIGTERM ignored\n'); });
    await loop(g);
  } else if (scenario === 'stopped') {
    if (g.rank === 1) process.exit(130);
    await new Promise((r) => setTimeout(r, 1500));
    out({ rank: g.rank, stopped: true });
    process.exit(130);
  } else if (scenario === 'told' || scenario === 'told-dies') {
    if (g.rank === 0) {
      if (scenario === 'told') process.on('SIGTERM', () => undefined);
      process.stderr.write('semaim: the run cannot start here\n');
      await new Promise((r) => setTimeout(r, 1000));
      process.exit(2);
    }
    process.stderr.write('semaim: rank 0 of 3 could not start: the run cannot start here\n');
    if (g.rank === 2) process.exit(1);
    await new Promise((r) => setTimeout(r, 60_000));
  } else if (scenario === 'stall') {
    await loop(g);
  } else if (scenario === 'sigterm-fails') {
    // the stop that SIGTERM asks for fails on rank 1 (its checkpoint cannot be written); rank 0 stops as asked
    process.on('SIGTERM', () => {
      if (g.rank === 1) {
        process.stderr.write('semaim: cannot write checkpoints/step-00000003/model.safetensors: ENOSPC: no space left on device\n');
        process.exit(1);
      }
      setTimeout(() => process.exit(143), 500);
    });
    out({ rank: g.rank, ready: true });
    await loop(g);
  } else if (scenario === 'sigterm') {
    // exits a little later, so that a second delivery of the signal would be seen
    process.on('SIGTERM', () => { out({ rank: g.rank, signal: 'SIGTERM' }); setTimeout(() => process.exit(0), 500); });
    out({ rank: g.rank, ready: true });
    await loop(g);
  }
  dist.destroyProcessGroup();
}

main().catch((e) => {
  const err = e as Error & { code?: string };
  process.stderr.write(`worker failed: ${err.code ?? ''} ${err.message}\n`);
  process.exit(1);
});
