#!/usr/bin/python3
"""Golden decodes of Netpbm files (P1-P6) by PIL (Debian 12: python3-pil 9.4), torchvision's pil_loader:
np.asarray(Image.open(f).convert('RGB')).

Run:  /usr/bin/python3 scripts/golden_pnm.py
Writes test/golden/pnm/: the files (made here, byte by byte, so every variant is covered: plain and raw,
maxval 255, a small one, one that needs half-to-even rounding, 16 bits, comments in the header) and
manifest.json: per file its size and the SHA-256 of PIL's H x W x 3 RGB bytes. For a 16-bit P5, which PIL
opens as mode I and clips at 255 on convert('RGB'), the manifest holds the bytes scaled as every other
depth is (round(v / maxval * 255), half to even), what semaim does; 'pil' says which.
test/data/pnm-golden.test.ts decodes the same files with semaim's decoder.
"""
import hashlib
import json
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'pnm')
W, H = 13, 7
rng = np.random.RandomState(0)


def plain(values, per_line=11):
    lines = [' '.join(str(int(v)) for v in values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return ('\n'.join(lines) + '\n').encode()


def files():
    grey = rng.randint(0, 256, (H, W))
    rgb = rng.randint(0, 256, (H, W, 3))
    bits = rng.randint(0, 2, (H, W))
    yield 'p1.pbm', b'P1\n# a comment\n13 7\n' + b'\n'.join(b''.join(b'%d' % v for v in row) for row in bits) + b'\n'
    packed = b''.join(np.packbits(row).tobytes() for row in bits.astype(np.uint8))
    yield 'p4.pbm', b'P4\n13 7\n' + packed
    yield 'p2.pgm', b'P2\n13 7\n255\n' + plain(grey.ravel())
    yield 'p2-max15.pgm', b'P2 13 7 15\n' + plain((grey.ravel() * 15) // 255)
    yield 'p3.ppm', b'P3\n#comment one\n#comment two\n13 7\n255\n' + plain(rgb.ravel())
    yield 'p3-max1000.ppm', b'P3\n13 7\n1000\n' + plain(rng.randint(0, 1001, H * W * 3))
    yield 'p5.pgm', b'P5\n13 7\n255\n' + grey.astype(np.uint8).tobytes()
    # maxval 2: v = 1 is 127.5, which rounds half to even (128)
    yield 'p5-max2.pgm', b'P5 13 7 2\n' + rng.randint(0, 3, H * W).astype(np.uint8).tobytes()
    yield 'p5-16bit.pgm', b'P5\n13 7\n65535\n' + rng.randint(0, 65536, H * W).astype('>u2').tobytes()
    yield 'p6.ppm', b'P6\n13 7\n255\n' + rgb.astype(np.uint8).tobytes()
    yield 'p6-max100.ppm', b'P6\n13 # width\n7\n100\n' + rng.randint(0, 101, H * W * 3).astype(np.uint8).tobytes()
    yield 'p6-16bit.ppm', b'P6\n13 7\n65535\n' + rng.randint(0, 65536, H * W * 3).astype('>u2').tobytes()


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    for name, data in files():
        path = os.path.join(OUT, name)
        with open(path, 'wb') as f:
            f.write(data)
        im = Image.open(path)
        entry = {'file': name, 'width': im.size[0], 'height': im.size[1], 'mode': im.mode, 'pil': True}
        if im.mode == 'I':
            v = np.asarray(im).astype(np.float64)
            px = np.repeat(np.round(v / 65535 * 255).astype(np.uint8)[..., None], 3, axis=2)
            entry['pil'] = False
        else:
            px = np.asarray(im.convert('RGB'))
        entry['rgbSha256'] = hashlib.sha256(np.ascontiguousarray(px, dtype=np.uint8).tobytes()).hexdigest()
        manifest.append(entry)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
        f.write('\n')
    print(f'wrote {len(manifest)} files to {OUT}')


main()
