// A launcher process for test/dist/launch.test.ts (signal forwarding): starts 2 workers of launched.js.
//   node launcher.js <scenario>
import { join } from 'node:path';
import { launchWorkers } from '../../../src/dist';

launchWorkers(process.argv.slice(2), { nprocPerNode: 2, script: join(__dirname, 'launched.js'), killGraceMs: 5000 })
  .then((r) => { process.exitCode = r.exitCode; })
  .catch((e) => { process.stderr.write(`${(e as Error).message}\n`); process.exitCode = 1; });
