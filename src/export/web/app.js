// @ts-check
// The page: loads model.onnx with onnxruntime-web (WebAssembly, files served from this folder),
// takes an image by drag-and-drop or the file picker, runs the encoder and draws the [CLS]
// attention, the similarity map S and the semantic order over the image the model sees.
import * as ort from './ort/ort.wasm.min.mjs';
import { preprocess } from './preprocess.js';
import { imageMaps, minMax, orderEarliness, turbo } from './maps.js';
import { orientRgba, withoutExifOrientation } from './orientation.js';

const CELL = 256;
const ALPHA = 0.6;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @param {string} text @param {'busy' | 'ready' | 'done' | 'error'} state */
function status(text, state) {
  $('status').textContent = text;
  document.body.dataset.state = state;
}

/**
 * The image as the grey a map is blended over (as semaim's figures: luminance squeezed into
 * 64..191), so that the colours are the colour bar's alone.
 * @param {ImageData} view
 */
function greyed(view) {
  const out = new ImageData(view.width, view.height);
  const d = view.data;
  for (let i = 0; i < d.length; i += 4) {
    const g = 64 + (0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]) / 2;
    out.data.set([g, g, g, 255], i);
  }
  return out;
}

/**
 * Draws the model's view of the image, scaled to CELL pixels, with a per-patch colour blended
 * over a grey copy of it (values in [0, 1]); `marker` rings one patch.
 * @param {HTMLCanvasElement} canvas @param {ImageData} view @param {ArrayLike<number> | null} values
 * @param {number} gridH @param {number} gridW @param {number} [marker]
 */
function drawCell(canvas, view, values, gridH, gridW, marker) {
  canvas.width = CELL;
  canvas.height = CELL;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  const src = document.createElement('canvas');
  src.width = view.width;
  src.height = view.height;
  /** @type {CanvasRenderingContext2D} */ (src.getContext('2d')).putImageData(values ? greyed(view) : view, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, CELL, CELL);
  if (!values) return;
  const ph = CELL / gridH;
  const pw = CELL / gridW;
  ctx.globalAlpha = ALPHA;
  for (let i = 0; i < gridH * gridW; i++) {
    const [r, g, b] = turbo(values[i]);
    ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
    ctx.fillRect((i % gridW) * pw, Math.floor(i / gridW) * ph, Math.ceil(pw), Math.ceil(ph));
  }
  ctx.globalAlpha = 1;
  if (marker !== undefined) {
    ctx.strokeStyle = 'white';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(((marker % gridW) + 0.5) * pw, (Math.floor(marker / gridW) + 0.5) * ph, Math.max(4, Math.min(pw, ph) * 0.45), 0, 2 * Math.PI);
    ctx.stroke();
  }
}

/**
 * RGBA pixels of an image file at its own size (colour as stored, alpha not premultiplied), under
 * the model's EXIF orientation policy. The browser rotates whatever createImageBitmap is given
 * (whichever formats it reads the tag of), so it decodes the file with its orientation tags set to
 * 1; 'apply' then rotates/flips the pixels as semaim's decoder does.
 * @param {Blob} file @param {'ignore' | 'apply'} exifOrientation
 */
async function decode(file, exifOrientation) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const stored = withoutExifOrientation(bytes);
  const blob = stored.bytes === bytes ? file : new Blob([stored.bytes], { type: file.type });
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  if (exifOrientation !== 'apply' || stored.orientation === 1) return image;
  const o = orientRgba(image.data, image.width, image.height, stored.orientation);
  return new ImageData(o.data, o.width, o.height);
}

async function main() {
  if (location.protocol === 'file:') {
    status('Browsers do not run WebAssembly modules from file:// pages. Serve this folder over http, e.g. `python3 -m http.server -d <this folder>`, and open http://localhost:8000/.', 'error');
    return;
  }
  status('loading the model…', 'busy');
  const info = await (await fetch('model.json')).json();
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
  const { imgSize, patchSize, embedDim } = info.encoder;
  const grid = imgSize / patchSize;
  // an export from before the policy was recorded: semaim's default
  /** @type {'ignore' | 'apply'} */
  const exifOrientation = info.exifOrientation?.policy === 'apply' ? 'apply' : 'ignore';
  $('model').textContent =
    `ViT ${imgSize}px, patch ${patchSize}, dim ${embedDim}, depth ${info.encoder.depth}, ${info.dtype}; ` +
    `EXIF orientation ${exifOrientation === 'apply' ? 'applied' : 'ignored'}`;
  status('drop an image here, or choose one', 'ready');

  /** @param {File} file */
  async function run(file) {
    status(`running on ${file.name}…`, 'busy');
    const image = await decode(file, exifOrientation);
    const { pixels, view } = preprocess(image.data, image.width, image.height, info.preprocessing);
    const t0 = performance.now();
    const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, imgSize, imgSize]) });
    const ms = performance.now() - t0;
    const tokens = /** @type {Float32Array} */ (out.last_hidden_state.data);
    const attention = out.cls_attention ? /** @type {Float32Array} */ (out.cls_attention.data) : null;
    const maps = imageMaps({ tokens, attention, gridH: grid, gridW: grid, dim: embedDim });
    const v = new ImageData(view, imgSize, imgSize);
    drawCell(/** @type {HTMLCanvasElement} */ ($('input')), v, null, grid, grid);
    drawCell(/** @type {HTMLCanvasElement} */ ($('attention')), v, attention ? minMax(attention) : null, grid, grid);
    drawCell(/** @type {HTMLCanvasElement} */ ($('similarity')), v, minMax(maps.similarity), grid, grid);
    drawCell(/** @type {HTMLCanvasElement} */ ($('order')), v, orderEarliness(maps.order), grid, grid, maps.centre);
    $('results').hidden = false;
    const row = Math.floor(maps.centre / grid);
    const col = maps.centre % grid;
    status(`${file.name} (${image.width}×${image.height}): semantic centre at patch row ${row}, column ${col}; encoder ${ms.toFixed(0)} ms`, 'done');
    // For scripts and tests: what the page computed.
    Object.assign(window, { semaimResult: { name: file.name, pixels, tokens, attention, similarity: maps.similarity, order: maps.order, centre: maps.centre } });
  }

  /** @param {FileList | null | undefined} files */
  const take = (files) => {
    const file = files && files[0];
    if (file) run(file).catch((e) => { console.error(e); status(`cannot use ${file.name}: ${e.message ?? e}`, 'error'); });
  };
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); take(e.dataTransfer?.files); });
  $('file').addEventListener('change', (e) => take(/** @type {HTMLInputElement} */ (e.target).files));
}

main().catch((e) => { console.error(e); status(`cannot start: ${e.message ?? e}`, 'error'); });
