#!/usr/bin/env node
// Prints the types that the package's public signatures name but no entry point exports (a caller
// cannot name them): for every export of every package.json "exports" entry (namespaces included),
// the parameter and return types of functions, the public members of classes and interfaces, and
// type aliases. Reads the compiled declarations: run `npx tsc -p .` first. Each line: the type, its
// file, and the exports that name it. Some are internal on purpose (native handles, helper types).
'use strict';
const path = require('node:path');
const ts = require('typescript');

const root = path.join(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const entries = Object.entries(pkg.exports)
  .filter(([, v]) => v.types)
  .map(([k, v]) => [k === '.' ? 'semaim' : `semaim${k.slice(1)}`, path.join(root, v.types)]);
const program = ts.createProgram(
  entries.map(([, f]) => f),
  { strict: true, noEmit: true, skipLibCheck: true, types: [] },
);
const checker = program.getTypeChecker();
const ours = (d) => d.getSourceFile().fileName.startsWith(path.join(root, 'dist', 'src') + path.sep);
const target = (s) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);

const exported = new Set(); // declarations a caller can reach by a public name
const publicSymbols = []; // [public name, symbol]
function collect(moduleSymbol, prefix, seen) {
  for (const e of checker.getExportsOfModule(moduleSymbol)) {
    const s = target(e);
    for (const d of s.declarations ?? []) exported.add(d);
    publicSymbols.push([prefix + e.name, s]);
    if (s.flags & ts.SymbolFlags.Module && !seen.has(s)) {
      seen.add(s);
      collect(s, `${prefix}${e.name}.`, seen);
    }
  }
}
for (const [name, file] of entries) collect(checker.getSymbolAtLocation(program.getSourceFile(file)), `${name}:`, new Set());

const gaps = new Map(); // 'Type (file)' -> the exports naming it
function visit(node, user) {
  if (!node) return;
  const id = ts.isTypeReferenceNode(node)
    ? node.typeName
    : ts.isExpressionWithTypeArguments(node)
      ? node.expression
      : ts.isTypeQueryNode(node)
        ? node.exprName
        : null;
  const s = id && checker.getSymbolAtLocation(id);
  if (s && !(s.flags & ts.SymbolFlags.TypeParameter)) {
    const t = target(s);
    const decls = (t.declarations ?? []).filter(ours);
    if (decls.length && !decls.some((d) => exported.has(d))) {
      const key = `${t.name} (${path.relative(path.join(root, 'dist'), decls[0].getSourceFile().fileName)})`;
      if (!gaps.has(key)) gaps.set(key, new Set());
      gaps.get(key).add(user);
    }
  }
  ts.forEachChild(node, (n) => visit(n, user));
}

const done = new Set();
for (const [name, s] of publicSymbols) {
  for (const d of s.declarations ?? []) {
    if (!ours(d) || done.has(d)) continue;
    done.add(d);
    if (ts.isFunctionDeclaration(d)) {
      for (const p of d.parameters) visit(p.type, name);
      for (const t of d.typeParameters ?? []) visit(t.constraint, name);
      visit(d.type, name);
    } else if (ts.isClassDeclaration(d) || ts.isInterfaceDeclaration(d)) {
      for (const h of d.heritageClauses ?? []) for (const t of h.types) visit(t, name);
      for (const m of d.members) {
        if (ts.getCombinedModifierFlags(m) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
        if (m.name && ts.isPrivateIdentifier(m.name)) continue;
        const member = `${name}.${m.name ? m.name.getText() : 'constructor'}`;
        visit(m.type, member);
        for (const p of m.parameters ?? []) visit(p.type, member);
      }
    } else if (ts.isTypeAliasDeclaration(d) || ts.isVariableDeclaration(d)) {
      visit(d.type, name);
    }
  }
}
for (const [type, users] of [...gaps].sort()) {
  const list = [...users];
  console.log(`${type} <- ${list.slice(0, 4).join(', ')}${list.length > 4 ? ` (+${list.length - 4})` : ''}`);
}
