#!/usr/bin/python3
"""Resolve the Depends/Pre-Depends closure of some Debian packages from a Packages index.

Used by scripts/check-libtorch2.sh to fetch libtorch 2.x from Debian trixie into a private
root (dpkg -x, nothing installed system-wide). Picks the first satisfiable alternative of
each dependency (real package first, then a provider); version constraints are ignored
because one index (one suite) has one version of each package.

Usage: trixie-closure.py PACKAGES_FILE [--exclude NAME ...] ROOT_PACKAGE ...
Prints one line per package: NAME VERSION FILENAME SHA256 SIZE
"""
import lzma
import re
import sys


def parse(path):
    opener = lzma.open if path.endswith('.xz') else open
    with opener(path, 'rt', encoding='utf-8') as f:
        text = f.read()
    pkgs, provides = {}, {}
    for block in text.split('\n\n'):
        d, key = {}, None
        for line in block.split('\n'):
            if line.startswith((' ', '\t')) and key:
                d[key] += '\n' + line
                continue
            m = re.match(r'^([A-Za-z0-9-]+):\s?(.*)$', line)
            if m:
                key = m.group(1)
                d[key] = m.group(2)
        name = d.get('Package')
        if not name or name in pkgs:
            continue
        pkgs[name] = d
        for p in split_list(d.get('Provides', '')):
            provides.setdefault(p[0][0], []).append(name)
    return pkgs, provides


def split_list(field):
    """'a (>= 1) | b, c:any' -> [[('a', '>= 1'), ('b', None)], [('c', None)]]"""
    out = []
    for group in field.split(','):
        group = group.strip()
        if not group:
            continue
        alts = []
        for alt in group.split('|'):
            m = re.match(r'^\s*([^\s(\[:]+)(?::\S+)?\s*(?:\(([^)]*)\))?', alt)
            if m:
                alts.append((m.group(1), m.group(2)))
        out.append(alts)
    return out


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    index, rest = argv[1], argv[2:]
    exclude, roots = set(), []
    it = iter(rest)
    for a in it:
        if a == '--exclude':
            exclude.add(next(it))
        else:
            roots.append(a)
    pkgs, provides = parse(index)
    chosen, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in chosen or name in exclude:
            continue
        d = pkgs.get(name)
        if d is None:
            sys.exit(f'trixie-closure: no package {name} in {index}')
        chosen[name] = d
        deps = split_list(d.get('Pre-Depends', '')) + split_list(d.get('Depends', ''))
        for alts in deps:
            pick = None
            for alt, _ in alts:  # an excluded or already chosen alternative satisfies the group
                if alt in chosen or alt in exclude:
                    pick = alt
                    break
            if pick is None:
                for alt, _ in alts:
                    if alt in pkgs:
                        pick = alt
                        break
                    if alt in provides:
                        pick = provides[alt][0]
                        break
            if pick is None:
                sys.exit(f'trixie-closure: cannot satisfy {alts} (needed by {name})')
            todo.append(pick)
    for name in sorted(chosen):
        d = chosen[name]
        print(name, d['Version'], d['Filename'], d.get('SHA256', '-'), d.get('Size', '0'))


if __name__ == '__main__':
    main(sys.argv)
