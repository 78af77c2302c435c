// The synthetic objects as a segmentation dataset: every image's object mask becomes a label map,
// either background + one class per shape ('shapes': 0 = background, 1 + k = shape k, 11 classes with
// all ten shapes) or background + object ('object': 2 classes). No pixel is ignored.
import { handleFromImage } from '../codecs/decode';
import { renderSynthetic, SHAPES, syntheticConfig, type SyntheticOptions } from './synthetic';
import { maskPlane, withMask, type SegSource } from './seg-source';

export type SyntheticSegClasses = 'shapes' | 'object';

export function syntheticSegClasses(kind: SyntheticSegClasses, shapes: number = SHAPES.length): string[] {
  return kind === 'object' ? ['background', 'object'] : ['background', ...SHAPES.slice(0, shapes)];
}

export function syntheticSegSource(opts: SyntheticOptions & { segClasses: SyntheticSegClasses }): SegSource {
  const { segClasses, ...synthetic } = opts;
  const config = syntheticConfig(synthetic);
  const root = `synthetic-objects(${config.split}, seed ${config.seed}, ${config.height}x${config.width}, ${segClasses})`;
  return {
    root,
    length: config.count,
    classes: syntheticSegClasses(segClasses, config.classes),
    fixedSize: [config.height, config.width],
    listingSkips: [],
    name: (i) => `${root}#${i}`,
    open(i) {
      const s = renderSynthetic(config, i);
      const src = s.image.mask!;
      const labels = new Uint8Array(src.width * src.height);
      const value = segClasses === 'object' ? 1 : 1 + s.label;
      for (let k = 0; k < labels.length; k++) labels[k] = src.data[src.offset + k] ? value : 0;
      return withMask(handleFromImage(s.image), maskPlane(labels, src.width, src.height));
    },
  };
}
