#!/usr/bin/python3
"""Golden outputs of the authors' evaluation input pipeline: PIL decoding (Debian 12: python3-pil 9.4,
libjpeg-turbo) and torchvision 0.14's Resize(R, bicubic) + CenterCrop(S) + ToTensor + Normalize(ImageNet),
the transform of SemAIM's main_linprobe.py / main_knn.py (R = 256, S = 224) at smaller analogue sizes
(S = 64, R = floor(S / 0.875) = 73: semaim's evalTransforms rule, so both sides do the same geometry).

Run:  /usr/bin/python3 scripts/golden_pipeline.py
Writes test/golden/pipeline/: the test images (generated here with PIL, so reproducible), and per image
  <name>.rgb.gz      PIL's decoded pixels (for the 8-bit PNGs only their SHA-256, in the manifest), np.asarray(Image.open(f).convert('RGB')) (torchvision's
                     pil_loader), H x W x 3 bytes (Sub-filtered, see gz()), gzip; with alpha also <name>.white.gz, the image
                     composited on white (semaim's default background);
  <name>.s<S>.tv.gz  (of the white composite for the image with alpha) torchvision's output as the bytes ToTensor divides by 255 (the resized, cropped
                     uint8 PIL image), S x S x 3 (for S = 224 its central 128 x 128); Normalize is applied by the test ((x/255 - mean)/std
                     in float32, which this script checks equals torchvision's tensor to 1e-6);
  <name>.s<S>.f.gz   the same resize and crop done by PIL in floating point ('F' images, per channel,
                     PIL's bicubic a = -0.5 with its antialiased support), clamped to 0..255, stored
                     as int16 round((float - tv) * 16), the difference from the .tv bytes in 1/16 levels:
                     what semaim computes, which rounds to no uint8 between decode and normalisation
                     (PIL's 8-bit resize also rounds and clips between its horizontal and vertical
                     pass);
  manifest.json      one entry per image: file, format notes, size, cases.
test/data/pipeline-golden.test.ts runs semaim's decoder and evaluation pipeline on the same files.
"""
import gzip
import hashlib
import json
import math
import os
import struct
import zlib

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import get_sampling
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'pipeline')
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXACT = ('rgb.png', 'down-rgb.png', 'gray.png', 'palette.png')  # decoded pixels stored as a SHA-256
WINDOW = (240, 180, 128, 96)  # x0, y0, w, h of the big image's decoded pixels kept


def scene(w, h, seed, noise=0.5):
    """A synthetic photo-like RGB image: colour gradients, a grating, sharp coloured shapes, noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / w, y / h
    img = np.stack([
        40 + 170 * u + 30 * np.sin(6.0 * v + seed),
        60 + 120 * v + 40 * np.cos(5.0 * u - seed),
        200 - 150 * u * v + 25 * np.sin(9.0 * (u + v)),
    ], -1)
    # a grating whose period is a few source pixels (aliases without antialiasing)
    img += (28 * np.sin(2 * math.pi * (x * 0.23 + y * 0.05)))[..., None] * (u > 0.55)[..., None] * (v < 0.5)[..., None]
    # saturated coloured discs and a bar (sharp chroma edges)
    for k, col in enumerate(((230, 30, 40), (20, 200, 60), (30, 40, 220), (250, 230, 20))):
        cx, cy, r = w * (0.2 + 0.2 * k), h * (0.65 + 0.1 * ((k % 2) * 2 - 1)), 0.12 * min(w, h) + 2
        inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[inside] = col
    img[(np.abs(x - 0.35 * w - 0.3 * (y - h / 2)) < max(1.0, w / 60))] = (250, 250, 250)
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def png16(path, arr16):
    """Writes a 16-bit RGB (H x W x 3) or gray (H x W) PNG by hand (PIL cannot write 16-bit RGB)."""
    h, w = arr16.shape[:2]
    ctype = 2 if arr16.ndim == 3 else 0
    raw = b''.join(b'\x00' + arr16[r].astype('>u2').tobytes() for r in range(h))

    def chunk(t, body):
        return struct.pack('>I', len(body)) + t + body + struct.pack('>I', zlib.crc32(t + body) & 0xFFFFFFFF)

    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, ctype, 0, 0, 0))
                + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def make_images():
    """(file name, note) of every test image, written into OUT."""
    made = []

    def jpeg(name, arr, quality, subsampling, progressive=False, exif=None, mode='RGB'):
        img = Image.fromarray(arr).convert(mode)
        kw = dict(quality=quality, progressive=progressive, optimize=False)
        if mode == 'RGB':
            kw['subsampling'] = subsampling
        if exif is not None:
            kw['exif'] = exif
        img.save(os.path.join(OUT, name), 'JPEG', **kw)
        made.append(name)

    big = scene(600, 450, 1, noise=0.5)
    jpeg('big420q90.jpg', big, 90, 2)                                   # 600x450 4:2:0 baseline
    jpeg('prog444q95.jpg', scene(112, 84, 2), 95, 0, progressive=True)  # 4:4:4 progressive
    jpeg('prog420q75.jpg', scene(83, 110, 3), 75, 2, progressive=True)   # portrait, odd size, 4:2:0 progressive
    jpeg('base422q85.jpg', scene(131, 77, 4), 85, 1)                     # 4:2:2, odd size
    jpeg('gray-q90.jpg', scene(160, 120, 5), 90, 2, mode='L')            # one-component JPEG
    jpeg('up420q90.jpg', scene(40, 30, 6, noise=2.0), 90, 2)             # upscaled 2.4x
    jpeg('odd420q80.jpg', scene(75, 53, 7), 80, 2)                       # partial MCUs on both axes
    ex = Image.Exif()
    ex[0x0112] = 6
    jpeg('exif6-420q90.jpg', scene(90, 70, 8), 90, 2, exif=ex.tobytes())  # orientation 6 (rotate 90 CW)
    Image.fromarray(scene(85, 61, 9)).save(os.path.join(OUT, 'rgb.png'))
    made.append('rgb.png')
    Image.fromarray(scene(200, 130, 10, noise=0.0)).save(os.path.join(OUT, 'down-rgb.png'), compress_level=9)
    made.append('down-rgb.png')
    Image.fromarray(scene(90, 66, 11)[..., 1]).save(os.path.join(OUT, 'gray.png'))
    made.append('gray.png')
    rgba = np.concatenate([scene(80, 60, 12), np.zeros((60, 80, 1), np.uint8)], -1)
    yy, xx = np.mgrid[0:60, 0:80]
    rgba[..., 3] = np.clip(xx * 255 // 79 + (yy > 30) * 60, 0, 255)  # 0 (left) .. 255 (right)
    Image.fromarray(rgba, 'RGBA').save(os.path.join(OUT, 'rgba.png'))
    made.append('rgba.png')
    Image.fromarray(scene(70, 90, 13)).convert('P', palette=Image.ADAPTIVE, colors=48).save(os.path.join(OUT, 'palette.png'))
    made.append('palette.png')
    rgb16 = scene(48, 36, 14).astype(np.uint32) * 257 + np.random.RandomState(14).randint(-128, 128, (36, 48, 3))
    png16(os.path.join(OUT, 'rgb16.png'), np.clip(rgb16, 0, 65535).astype(np.uint16))
    made.append('rgb16.png')
    return made


def gz(path, arr):
    """gzip of the array's bytes; H x W x 3 uint8 arrays as PNG's Sub filter: each byte minus its left
    neighbour's in the same channel, mod 256 (the test undoes it), which gzip compresses 2-3x better."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.uint8:
        arr = arr.copy()
        arr[:, 1:] -= np.asarray(arr[:, :-1])
    with open(path, 'wb') as f:
        f.write(gzip.compress(arr.tobytes(), 9, mtime=0))


def eval_tf(S):
    R = int(math.floor(S / 0.875))
    return R, T.Compose([T.Resize(R, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(S)])


def float_resize_crop(rgb, R, S):
    """PIL's bicubic resize of each channel as a float ('F') image, then torchvision's centre crop."""
    h, w = rgb.shape[:2]
    # torchvision 0.14 _compute_resized_output_size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = R, int(R * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    top, left = int(round((nh - S) / 2.0)), int(round((nw - S) / 2.0))
    if nh < S or nw < S:
        raise ValueError('crop larger than the resized image')
    chans = []
    for c in range(3):
        f = Image.fromarray(rgb[..., c].astype(np.float32), 'F').resize((nw, nh), Image.BICUBIC)
        chans.append(np.asarray(f)[top:top + S, left:left + S])
    return np.clip(np.stack(chans, -1), 0, 255)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    names = make_images()
    entries = []
    for name in names:
        path = os.path.join(OUT, name)
        raw = Image.open(path)
        entry = dict(file=name, mode=raw.mode, width=raw.size[0], height=raw.size[1], cases=[])
        if name.endswith('.jpg'):
            entry['progressive'] = bool(raw.info.get('progressive') or raw.info.get('progression'))
            entry['subsampling'] = {0: '4:4:4', 1: '4:2:2', 2: '4:2:0', -1: 'gray'}[get_sampling(raw)]
            entry['exifOrientation'] = raw.getexif().get(0x0112, 1)
        # torchvision's pil_loader: Image.open(f).convert('RGB') (alpha dropped, EXIF orientation ignored)
        with open(path, 'rb') as f:
            img = Image.open(f).convert('RGB')
        rgb = np.asarray(img)
        if name == 'big420q90.jpg':  # (kept small: its central 128 x 96 window only)
            entry['window'] = WINDOW
            x0, y0, w, h = WINDOW
            gz(os.path.join(OUT, name + '.rgb.gz'), rgb[y0:y0 + h, x0:x0 + w])
        elif name in EXACT:  # lossless 8-bit PNG: semaim must give these bytes, so a digest is enough
            entry['rgbSha256'] = hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()
        else:
            gz(os.path.join(OUT, name + '.rgb.gz'), rgb[..., :1] if raw.mode == 'L' else rgb)  # gray: one channel (R = G = B)
        if raw.mode == 'RGBA':
            white = Image.new('RGBA', raw.size, (255, 255, 255, 255))
            comp = np.asarray(Image.alpha_composite(white, raw).convert('RGB'))
            gz(os.path.join(OUT, name + '.white.gz'), comp)
            entry['white'] = True
            # semaim composites transparency on white (the loader's default), torchvision's
            # convert('RGB') drops alpha: the outputs below are of the composite, so that they test the
            # resize; how far apart the two inputs are is the .rgb / .white difference
            img, rgb = Image.fromarray(comp), comp
        if entry.get('exifOrientation', 1) != 1:
            # PIL's exif_transpose for orientation 6 is a 90-degree clockwise turn (the test turns the .rgb)
            assert entry['exifOrientation'] == 6
            turned = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
            assert np.array_equal(turned, np.rot90(rgb, -1))
        sizes = (224, 64) if name == 'big420q90.jpg' else (64,)
        for S in sizes:
            R, geo = eval_tf(S)
            out = geo(img)
            u8 = np.asarray(out)
            assert u8.shape == (S, S, 3), (name, u8.shape)
            tens = T.Normalize(MEAN, STD)(T.ToTensor()(out))
            mine = (torch.from_numpy(u8.transpose(2, 0, 1).astype(np.float32)) / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            assert torch.max(torch.abs(tens - mine)).item() < 1e-6
            case = dict(size=S, resize=R, tv=f'{name}.s{S}.tv.gz')
            if S > 64:  # (kept small: the central 128 x 128 of the 224 x 224 output)
                o = (S - 128) // 2
                case['window'] = [o, o, 128, 128]
                gz(os.path.join(OUT, case['tv']), u8[o:o + 128, o:o + 128])
            else:
                gz(os.path.join(OUT, case['tv']), u8)
            if S == 64:
                fl = float_resize_crop(rgb, R, S)
                case['float'] = f'{name}.s{S}.f.gz'
                delta = np.round((fl - u8) * 16)
                assert np.abs(delta).max() <= 32767, (name, np.abs(delta).max())
                gz(os.path.join(OUT, case['float']), delta.astype('<i2'))
                d = np.abs(fl - u8)
                case['tvVsFloat'] = dict(max=round(float(d.max()), 3), mean=round(float(d.mean()), 4))
            entry['cases'].append(case)
        entries.append(entry)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(dict(mean=MEAN, std=STD, images=entries), f, indent=1)
        f.write('\n')
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f'wrote {OUT}: {len(entries)} images, {total} bytes')


if __name__ == '__main__':
    main()
