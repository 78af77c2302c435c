// Files a command writes where the user points it: one that exists is replaced only when asked
// (--overwrite), and never one the command reads from (an encoder and its config).
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { OptionError } from '../util/options';

/** The path with its folder's symlinks resolved (the file itself need not exist). */
function canonical(path: string): string {
  const dir = dirname(resolve(path));
  return join(existsSync(dir) ? realpathSync(dir) : dir, basename(path));
}

/** Refuses, naming `option`, an output that is one of `inputs`, or that exists without `overwrite`. */
export function checkOutputs(outputs: string[], o: { overwrite: boolean; inputs?: string[]; option?: string }): void {
  const option = o.option ?? 'out';
  const inputs = new Map((o.inputs ?? []).map((p) => [canonical(p), p]));
  for (const out of outputs) {
    const input = inputs.get(canonical(out));
    if (input !== undefined) throw new OptionError(option, `${out} is what this command reads (${input}): choose another output`);
    if (!o.overwrite && existsSync(out)) throw new OptionError(option, `${out} exists: choose another output, or pass --overwrite to replace it`);
  }
}

/** The files an encoder source consists of: its weights, and for an exported one the config beside them. */
export function encoderFiles(weights: string): string[] {
  return [weights, weights.replace(/\.safetensors$/, '.json')];
}
