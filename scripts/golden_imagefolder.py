#!/usr/bin/python3
"""Golden sample order of torchvision's ImageFolder (make_dataset) for a tree with nested sub-folders,
names that sort differently by code point than by UTF-16 code unit, and symlinked folders.

Run:  /usr/bin/python3 scripts/golden_imagefolder.py
Writes test/golden/imagefolder/order.json: the tree (empty files and symlinks, relative to a base folder),
torchvision's IMG_EXTENSIONS, and its classes and samples (path relative to the root, class index).
torchvision lists per class, in sorted class order: for root, _, fnames in sorted(os.walk(class_dir,
followlinks=True)): for fname in sorted(fnames) -- folders sorted by their whole path string ('a/b-c' before
'a/b/c'), files by name within each. Without torchvision the same walk is run here (make_dataset below).
test/data/sources.test.ts lists the same tree with semaim's imageFolder.
"""
import json
import os
import tempfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'imagefolder')
PUA, ASTRAL = '\ue000', '\U0001F600'  # UTF-16 puts U+1F600 (surrogates D83D DE00) first; code points put U+E000 first

FILES = [
    'root/a/z.jpg', 'root/a/B.JPG', 'root/a/notes.txt', 'root/a/b/x.png', 'root/a/b/c/w.jpg', 'root/a/b-c/y.jpeg',
    'root/a/b.c/v.bmp', f'root/a/{PUA}.png', f'root/a/{ASTRAL}.png', f'root/a/{PUA}/q.jpg', f'root/a/{ASTRAL}/q.jpg',
    'root/b/one.tif', 'root/b/sub/two.webp', 'root/b/sub/deeper/three.tiff', 'root/b-c/x.ppm', 'root/B/x.pgm',
    f'root/{PUA}/1.jpg', f'root/{ASTRAL}/1.jpg',
    'outside/o.jpg', 'outside/deep/p.jpg', 'outside2/k.png', 'outside2/m/n.png',
]
# (link, target relative to the link's folder): a folder inside a class, and a class, both outside the root
SYMLINKS = [('root/a/link', '../../outside'), ('root/s', '../outside2')]

try:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
    SOURCE = 'torchvision'
except ImportError:
    SOURCE = 'make_dataset reimplemented in scripts/golden_imagefolder.py'
    IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')

    def find_classes(directory):
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(directory, extensions):
        _, class_to_idx = find_classes(directory)
        out = []
        for target_class in sorted(class_to_idx):
            for root, _, fnames in sorted(os.walk(os.path.join(directory, target_class), followlinks=True)):
                for fname in sorted(fnames):
                    path = os.path.join(root, fname)
                    if path.lower().endswith(extensions):
                        out.append((path, class_to_idx[target_class]))
        return out


def main():
    with tempfile.TemporaryDirectory() as base:
        for f in FILES:
            os.makedirs(os.path.dirname(os.path.join(base, f)), exist_ok=True)
            open(os.path.join(base, f), 'wb').close()
        for link, target in SYMLINKS:
            os.symlink(target, os.path.join(base, link))
        root = os.path.join(base, 'root')
        classes, _ = find_classes(root)
        samples = [(os.path.relpath(p, root), c) for p, c in make_dataset(root, extensions=IMG_EXTENSIONS)]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'order.json'), 'w', encoding='utf-8') as f:
        json.dump({'source': SOURCE, 'files': FILES, 'symlinks': SYMLINKS, 'root': 'root', 'extensions': list(IMG_EXTENSIONS),
                   'classes': classes, 'samples': samples}, f, ensure_ascii=True, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
