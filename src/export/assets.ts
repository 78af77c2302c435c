// Files the exporters read at run time that the TypeScript compiler does not carry into dist/:
// the ONNX schema and the browser page. They stay in src/export/ of the package.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

interface PackageJson {
  name?: string;
  version?: string;
}

function findPackage(): { root: string; json: PackageJson } {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const json = JSON.parse(readFileSync(pkg, 'utf8')) as PackageJson;
      if (json.name === 'semaim') return { root: dir, json };
    }
    if (dirname(dir) === dir) throw new Error(`cannot find the semaim package folder above ${__dirname}`);
  }
}

/** semaim's version from its package.json. */
export function packageVersion(): string {
  return findPackage().json.version ?? '0.0.0';
}

/** Path of a file under src/export/ of the installed package (e.g. 'onnx.proto', 'web/index.html'). */
export function exportAsset(name: string): string {
  const path = join(findPackage().root, 'src', 'export', name);
  if (!existsSync(path)) throw new Error(`missing ${path}: the semaim package is incomplete (it ships src/export/${name})`);
  return path;
}
