#!/usr/bin/env node
// The `semaim` command line: one sub-command per job.
import { OptionError } from '../util/options';
import { commands } from './commands';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const width = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
    process.stdout.write(
      'semaim — SemAIM pre-training, evaluation and visualisation for Vision Transformers\n\n' +
        'Usage: semaim <command> [--config file.json|yaml] [--option value ...]\n\nCommands:\n' +
        Object.entries(commands)
          .map(([n, c]) => `  ${n.padEnd(width)}${c.summary}`)
          .join('\n') +
        '\n\nRun `semaim <command> --help` for its options and defaults.\n',
    );
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`semaim: unknown command '${name}' (known: ${Object.keys(commands).join(', ')})\n`);
    return 2;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error & { exitCode?: number }) => {
    process.stderr.write(`semaim: ${err instanceof OptionError ? err.flagMessage : err.message}\n`);
    if (process.env.SEMAIM_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err.exitCode ?? (err.name === 'OptionError' || err.name === 'ConfigError' ? 2 : 1);
  },
);
