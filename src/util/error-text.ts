// How an error reads on the command line (main's last line, and the note a rank leaves the others).
import { OptionError } from './options';
import { mkdirError } from './safe-write';

/** What the user is told of an error: an option's error names the flag as typed; a folder that could not be made, what is in the way. */
export function errorText(e: unknown): string {
  const err = mkdirError(e);
  return err instanceof OptionError ? err.flagMessage : err instanceof Error ? err.message : String(err);
}
