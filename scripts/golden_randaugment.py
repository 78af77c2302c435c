#!/usr/bin/python3
"""Golden outputs of RandAugment's ops, computed by PIL (Debian 12: python3-pil 9.4) as timm's
auto_augment.py applies them (timm 0.3.2, which MAE and SemAIM fine-tune with: `rand-m9-mstd0.5-inc1`,
fill = the ImageNet mean in bytes (124, 116, 104), resample BICUBIC; BILINEAR checked too).

Run:  /usr/bin/python3 scripts/golden_randaugment.py
Writes test/golden/randaugment/ops.json: one 15 x 11 input image and, per op, level (0..10), sign and
resampling filter, PIL's output; images are planar RGB bytes (3 x H x W), base64. The level-to-argument
mappings below are written from timm's `_*_level_to_arg` functions, independently of semaim's code.
test/data/randaugment-golden.test.ts applies semaim's ops and requires equal bytes.
"""
import base64
import json
import math
import os

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'randaugment', 'ops.json')
H, W = 11, 15
FILL = (124, 116, 104)
MAX_LEVEL = 10.0


def signed(v, negative):
    return -v if negative else v


def arg(op, level, negative):
    """timm's level-to-argument mappings (`_rotate_level_to_arg`, `_enhance_level_to_arg`, ...)."""
    m = level / MAX_LEVEL
    if op == 'Rotate':
        return signed(m * 30.0, negative)
    if op == 'Posterize':
        return int(m * 4)
    if op == 'PosterizeIncreasing':
        return 4 - int(m * 4)
    if op == 'Solarize':
        return int(m * 256)
    if op == 'SolarizeIncreasing':
        return 256 - int(m * 256)
    if op == 'SolarizeAdd':
        return int(m * 110)
    if op in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
        return m * 1.8 + 0.1
    if op.endswith('Increasing'):
        return max(0.1, 1.0 + signed(m * 0.9, negative))
    if op in ('ShearX', 'ShearY'):
        return signed(m * 0.3, negative)
    if op.startswith('Translate'):
        return signed(m * 0.45, negative)
    return None


def apply(img, op, a, resample):
    kw = dict(fillcolor=FILL, resample=resample)
    if op == 'AutoContrast':
        return ImageOps.autocontrast(img)
    if op == 'Equalize':
        return ImageOps.equalize(img)
    if op == 'Invert':
        return ImageOps.invert(img)
    if op == 'Rotate':
        return img.rotate(a, **kw)
    if op.startswith('Posterize'):
        return img if a >= 8 else ImageOps.posterize(img, a)
    if op.startswith('Solarize') and op != 'SolarizeAdd':
        return ImageOps.solarize(img, a)
    if op == 'SolarizeAdd':
        lut = [min(255, i + a) if i < 128 else i for i in range(256)]
        return img.point(lut * 3)
    for name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
        if op.startswith(name):
            return getattr(ImageEnhance, name)(img).enhance(a)
    if op == 'ShearX':
        return img.transform(img.size, Image.AFFINE, (1, a, 0, 0, 1, 0), **kw)
    if op == 'ShearY':
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, a, 1, 0), **kw)
    if op == 'TranslateXRel':
        return img.transform(img.size, Image.AFFINE, (1, 0, a * img.size[0], 0, 1, 0), **kw)
    if op == 'TranslateYRel':
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, a * img.size[1]), **kw)
    raise ValueError(op)


def planar(hwc):
    return base64.b64encode(np.ascontiguousarray(np.asarray(hwc).transpose(2, 0, 1)).tobytes()).decode()


def main():
    y, x = np.mgrid[0:H, 0:W]
    rng = np.random.RandomState(0)
    base = np.stack([96 + 70 * np.sin(x / 3.0 + c) + 50 * np.cos(y / 2.5 - c) for c in range(3)], -1)
    hwc = np.clip(base + rng.randint(-30, 31, size=(H, W, 3)), 0, 255).astype(np.uint8)
    src = Image.fromarray(hwc)
    geometric = ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
    signed_ops = geometric + ('ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing')
    ops = ('AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color', 'Contrast',
           'Brightness', 'Sharpness', 'PosterizeIncreasing', 'SolarizeIncreasing') + signed_ops
    cases = []
    for op in ops:
        for level in (10.0, 5.3, 0.0):
            for negative in ((False, True) if op in signed_ops else (False,)):
                for interp in (('bicubic', 'bilinear') if op in geometric else ('bicubic',)):
                    resample = Image.BICUBIC if interp == 'bicubic' else Image.BILINEAR
                    out = apply(src.copy(), op, arg(op, level, negative), resample)
                    cases.append(dict(op=op, level=level, negative=negative, interpolation=interp, out=planar(out)))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(dict(height=H, width=W, fill=FILL, input=planar(hwc), cases=cases), f, indent=0)
        f.write('\n')
    print(f'wrote {OUT}: {len(cases)} cases')


if __name__ == '__main__':
    main()
