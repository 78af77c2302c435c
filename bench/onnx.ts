// `npm run bench:onnx`: the ONNX export of standard ViT encoders (random weights, 224², patch 16):
// file size, time to build and serialise the model, the encoder's time per image in
// onnxruntime-node beside semaim's own forward pass (same thread count, batch 1, median of
// alternating runs),
// and how far the outputs are apart (relative to the largest |value| of semaim's output).
// Options: --threads N (default 2), --models vit_small,vit_base, --runs N (default 5).
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import * as torch from '../src/torch';
import { VisionTransformer, makeConfig } from '../src/semaim';
import { encodeModel } from '../src/export/onnx-proto';
import { encoderWeights, vitToOnnx } from '../src/export/vit-onnx';
import type { FloatType } from '../src/export/onnx-graph';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const threads = Number(arg('--threads', '2'));
const runs = Number(arg('--runs', '5'));
const models = arg('--models', 'vit_small,vit_base').split(',');
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
/** The median (the mean of the two middle values for an even count, as the other benchmarks). */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function rel(a: Float32Array, ref: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / m;
}

async function main(): Promise<void> {
  torch.setNumThreads(threads);
  const rows: string[] = [];
  for (const name of models) {
    const cfg = makeConfig(name, { imgSize: 224, patchSize: 16 });
    const vit = new VisionTransformer(cfg).initWeights(0).eval();
    torch.manualSeed(1);
    const x = torch.randn([1, 3, 224, 224]);
    const pixels = x.toFloat32Array();
    const forward = (): Float32Array => torch.noGrad(() => torch.scope(() => vit.forwardFeatures(x).toFloat32Array()));
    const ref = forward();
    for (const dtype of ['float32', 'float16'] as FloatType[]) {
      const t0 = now();
      const bytes = encodeModel(vitToOnnx(cfg, encoderWeights(vit), { dtype, attention: true }));
      const exportS = now() - t0;
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1 });
      const feeds = { pixel_values: new ort.Tensor('float32', pixels, [1, 3, 224, 224]) };
      // Alternating single runs, so that load from other processes hits both sides alike.
      const times: number[] = [];
      const semaimTimes: number[] = [];
      let out: Float32Array = new Float32Array(0);
      for (let i = 0; i <= runs; i++) {
        const t1 = now();
        const r = await session.run(feeds);
        const t2 = now();
        forward();
        if (i > 0) {
          times.push(t2 - t1);
          semaimTimes.push(now() - t2);
        }
        out = r.last_hidden_state.data as Float32Array;
      }
      await session.release();
      const ms = median(times) * 1e3;
      const refMs = median(semaimTimes) * 1e3;
      rows.push(
        `| ${name}/16 (${(vit.numParameters() / 1e6).toFixed(1)} M) | ${dtype} | ${(bytes.length / 2 ** 20).toFixed(1)} MiB | ${exportS.toFixed(1)} s | ` +
          `${ms.toFixed(0)} ms | ${refMs.toFixed(0)} ms | ${(refMs / ms).toFixed(2)}× | ${rel(out, ref).toExponential(2)} |`,
      );
      console.error(rows[rows.length - 1]);
    }
    x.dispose();
    vit.dispose();
  }
  const cpu = os.cpus()[0]?.model ?? '?';
  process.stdout.write(
    `\nMachine: ${cpu}, ${os.cpus().length} cores, ${threads} threads, load ${os.loadavg()[0].toFixed(1)}; ` +
      `onnxruntime-node ${ort.env.versions.common}; libtorch ${torch.version().torch}. Command: npm run bench:onnx -- --threads ${threads} --runs ${runs} --models ${models.join(',')}\n\n` +
      '| encoder | dtype | .onnx | export | onnxruntime, 1 image | semaim forward | semaim / onnxruntime | rel. difference of last_hidden_state |\n' +
      '|---|---|---:|---:|---:|---:|---:|---:|\n' +
      rows.join('\n') +
      '\n',
  );
}

if (require.main === module)
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
