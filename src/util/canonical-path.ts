// One name for a file however the path to it is spelled (relative, or through a symbolic link to its folder).
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** The path with its folder's symlinks resolved (the file itself need not exist; nor its folder, then as given, absolute). */
export function canonicalPath(path: string): string {
  const dir = dirname(resolve(path));
  return join(existsSync(dir) ? realpathSync(dir) : dir, basename(path));
}
