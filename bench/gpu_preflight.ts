// What a GPU session should know before it benchmarks (scripts/gpu-session.sh PERF=1): the device, the
// libtorch, whether the fused kernels compile with NVRTC here, and the attention backend libtorch picks
// for ViT-B/16's encoder (packed q/k/v views) and decoder (separate projections) in bf16, under the
// default priority and with cuDNN first. Prints lines of text; exits 1 only when nothing can be checked.
//   node dist/bench/gpu_preflight.js [--device cuda|cpu]
import * as torch from '../src/torch';
import { F } from '../src/torch';
import { native } from '../src/torch/native';

const i = process.argv.indexOf('--device');
const device = (i >= 0 ? process.argv[i + 1] : 'cuda') as torch.Device;
const cuda = device.startsWith('cuda');

function choices(): string {
  return torch.scope(() => {
    const [B, T, H, hd] = [8, 197, 12, 64];
    const dtype = cuda ? 'bfloat16' : 'float32';
    const qkv = torch.zeros([B, T, 3, H, hd], { dtype, device }).permute(2, 0, 3, 1, 4);
    const enc = F.sdpaBackend(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), { causal: true });
    const sep = torch
      .zeros([B, T - 1, H * hd], { dtype, device })
      .view(B, T - 1, H, hd)
      .transpose(1, 2);
    const dec = F.sdpaBackend(sep, sep, sep, { causal: true });
    return `encoder ${enc}, decoder ${dec}`;
  });
}

function main(): void {
  const v = torch.version();
  console.log(`libtorch ${v.torch}; addon built with CUDA: ${native.cudaBuild}`);
  if (cuda && !torch.cuda.isAvailable()) {
    console.log('no CUDA device: nothing to check');
    process.exit(1);
  }
  if (cuda) {
    const p = torch.cuda.getDeviceProperties(0);
    console.log(`device: ${p.name}, compute ${p.major}.${p.minor}, ${(p.totalMemory / 2 ** 30).toFixed(0)} GiB`);
  }
  const st = torch.fused.kernelStatus(cuda);
  console.log(`fused kernels: ${st.loaded ? 'compiled' : 'not available'} (${st.message})`);
  const priority = F.sdpaPriority();
  console.log(`attention (ViT-B/16 shapes, ${cuda ? 'bf16' : 'fp32'}, causal), default priority ${priority || '(libtorch < 2.6: fixed)'}: ${choices()}`);
  if (priority) {
    try {
      F.sdpaPriority('cudnn,flash,efficient,math');
      console.log(`  with cuDNN first: ${choices()}`);
    } catch (e) {
      console.log(`  with cuDNN first: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      F.sdpaPriority(priority);
    }
  }
}

main();
