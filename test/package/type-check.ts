// Type-checking code as a user of the package writes it: a scratch project whose node_modules/semaim is
// this checkout (its package.json exports map and compiled dist/), checked by the repo's typescript.
import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ts from 'typescript';

export const ROOT = join(__dirname, '..', '..', '..');

/** A fresh folder (the caller removes it) where `import ... from 'semaim'` resolves to this checkout. */
export function packageProject(prefix: string): string {
  const work = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(work, 'node_modules'));
  symlinkSync(ROOT, join(work, 'node_modules', 'semaim'), 'dir');
  return work;
}

/** tsc's strict errors in `files` (Node16 modules, the project's @types), as messages. */
export function typeErrors(files: string[]): string[] {
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    types: ['node'],
    typeRoots: [join(ROOT, 'node_modules', '@types')],
    skipLibCheck: true,
  });
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}
