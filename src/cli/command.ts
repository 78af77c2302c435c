// What every sub-command is, and the shared parsing step (config file + flags, validated, --help).
import { formatHelp, OptionTable, OptionValues, parseArgv, readConfigFile, resolveOptions } from '../util/options';

export interface Command {
  summary: string;
  /** The option table `run` parses (for --help, and for tests that check documented command lines). */
  options?: OptionTable;
  run(argv: string[]): Promise<number>;
}

/** Parses argv against a table; prints help and returns null for --help. */
export function parseCommand(argv: string[], usage: string, description: string, table: OptionTable): { o: OptionValues; positionals: string[] } | null {
  const { options, positionals } = parseArgv(argv, table);
  if (options.help) {
    process.stdout.write(formatHelp(usage, description, table));
    return null;
  }
  const file = options.config ? readConfigFile(String(options.config)) : {};
  return { o: resolveOptions(table, file, options), positionals };
}
