#!/usr/bin/env node
// The `semaim` command line: one sub-command per job.
import { errorText } from '../util/error-text';
import { isWorkerProcess } from '../dist/env';
import { didYouMean, helpAsked } from '../util/options';
import { shellQuote } from '../util/printable';
import { stopWhenOutputCloses } from '../util/closed-output';
import { stderrLine } from '../util/console-line';
import { packageVersion } from '../export/assets';

async function main(argv: string[]): Promise<number> {
  stopWhenOutputCloses(); // a run whose output pipe closed (`| head`, a killed launcher) stops after a checkpoint instead of dying
  // loaded here, not imported at the top: an addon that cannot load ($SEMAIM_ADDON, no build) is then a message, not a stack trace
  const { commands } = await import('./commands');
  let [name, ...rest] = argv;
  // 'semaim help knn' is 'semaim knn --help' ('semaim help knm' an unknown command, not the list with exit 0)
  if (name === 'help' && rest.length) [name, rest] = [rest[0], ['--help']];
  // '--help=false' (or '--help false') is refused as a command's is: it printed the list with exit 0, as if asked
  const helpValue = name?.startsWith('--help=') ? name.slice('--help='.length) : name === '--help' && /^(true|false)$/.test(rest[0]) ? rest[0] : undefined;
  if (helpValue !== undefined) {
    helpAsked(helpValue); // (throws for false)
    [name, rest] = ['--help', []];
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`semaim ${packageVersion()}\n`);
    return 0;
  }
  // no argument at all, not an empty one: 'semaim help ""' is an unknown command '', not the list
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const width = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
    const help =
      'semaim — SemAIM pre-training, evaluation and visualisation for Vision Transformers\n\n' +
      'Usage: semaim <command> [--config file.json|yaml] [--option value ...]\n       semaim --version\n\nCommands:\n' +
      Object.entries(commands)
        .map(([n, c]) => `  ${n.padEnd(width)}${c.summary}`)
        .join('\n') +
      '\n\nRun `semaim <command> --help` for its options and defaults.\n';
    if (name) {
      process.stdout.write(help);
      return 0;
    }
    // no command is a command line it cannot run, as an unknown command is (exit 2): the list goes to stderr
    process.stderr.write(help);
    return 2;
  }
  if (name.startsWith('-')) {
    // 'semaim --epochs 3 pretrain' was "unknown command '--epochs'"
    process.stderr.write(`semaim: ${optionBeforeCommand(argv, Object.keys(commands))}\n`);
    return 2;
  }
  const cmd = Object.hasOwn(commands, name) ? commands[name] : undefined; // not 'constructor' or 'toString'
  if (!cmd) {
    process.stderr.write(`semaim: unknown command '${name}'${didYouMean(name, Object.keys(commands))} (known: ${Object.keys(commands).join(', ')})\n`);
    return 2;
  }
  const notParallel = notDataParallel(name, cmd.options);
  if (notParallel) {
    process.stderr.write(`semaim: ${notParallel}\n`);
    return 2;
  }
  if (!currentFolderExists()) {
    // every relative path, and Node's path.resolve of any path, needs it: the command failed later with "ENOENT … uv_cwd"
    process.stderr.write(
      'semaim: the current folder no longer exists (it was deleted or moved after the shell entered it): cd to an existing folder and run again\n',
    );
    return 1;
  }
  return cmd.run(rest);
}

/**
 * What a command line that starts with an option is told: the command comes first. The example puts the
 * last word that names a command first (a value such as '--out-dir knn' may name one too); nothing is run.
 */
function optionBeforeCommand(argv: string[], names: string[]): string {
  let at = -1;
  argv.forEach((a, i) => {
    if (names.includes(a)) at = i;
  });
  const example = at < 0 ? ['<command>', ...argv] : [argv[at], ...argv.filter((_, i) => i !== at)];
  return `${shellQuote(argv[0])} comes before the command: write the command first, then its options (semaim ${example.map((a) => (a === '<command>' ? a : shellQuote(a))).join(' ')})`;
}

function currentFolderExists(): boolean {
  try {
    process.cwd(); // Node keeps the answer: a folder deleted later, during the run, no longer matters
    return true;
  } catch {
    return false;
  }
}

/**
 * Why this process must not run `name`: a command without the launch flags does not run data-parallel,
 * and torchrun (or --nproc-per-node) started it as one of several workers, which would each do the
 * whole work and write the same files (the last one wins, or a later one stops on the first's output).
 */
function notDataParallel(name: string, options: Record<string, unknown>): string | null {
  if (name === 'info' || 'nprocPerNode' in options || !isWorkerProcess()) return null;
  const world = Number(process.env.WORLD_SIZE);
  if (!(world > 1)) return null;
  return (
    `\`semaim ${name}\` does not run data-parallel, and this process is rank ${process.env.RANK} of ${world} workers (torchrun or --nproc-per-node): ` +
    `each would do the whole work and write the same files. Run it as one process` +
    (name === 'ablate' ? ' (--jobs N runs its measurements in N processes).' : '.')
  );
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error & { exitCode?: number }) => {
    stderrLine(`semaim: ${errorText(err)}`);
    if (process.env.SEMAIM_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err.exitCode ?? (err.name === 'OptionError' || err.name === 'ConfigError' ? 2 : 1);
  },
);
