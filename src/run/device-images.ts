// Moves a batch of images to the training device. Float32 batches arrive normalised by the loader;
// uint8 batches (4× fewer bytes to copy) are normalised on the device with the loader's formula,
// v × 1/(255·std) + (−mean/std) per channel. The two differ by at most half a grey level: a uint8
// batch holds the resampled values rounded to whole levels (as PIL's resize gives the authors'
// pipeline), a float32 batch keeps their fractions.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import type { Normalization } from '../data/streams';

/** Host batch → device tensor (N×3×H×W float32, normalised). */
export class DeviceImages {
  private affine: { device: torch.Device; scale: Tensor; bias: Tensor } | null = null;

  /** `normalize`: the mean/std uint8 batches still need (null when every batch arrives as float32). */
  constructor(private readonly normalize: Normalization | null) {}

  upload(images: Float32Array | Uint8Array, shape: number[], device: torch.Device): Tensor {
    if (images instanceof Float32Array) return torch.tensor(images, { shape, device });
    if (!this.normalize) throw new Error('DeviceImages: a uint8 batch needs the normalisation mean/std');
    return torch.scope(() => {
      const bytes = torch.tensor(images, { shape, dtype: 'uint8', device });
      const { scale, bias } = this.affineFor(device, shape[1]);
      return bytes.float().mul(scale).add(bias);
    });
  }

  dispose(): void {
    this.affine?.scale.dispose();
    this.affine?.bias.dispose();
    this.affine = null;
  }

  private affineFor(device: torch.Device, channels: number): { scale: Tensor; bias: Tensor } {
    if (this.affine?.device !== device) {
      this.dispose();
      const { mean, std } = this.normalize!;
      if (mean.length !== channels || std.length !== channels)
        throw new Error(`DeviceImages: mean/std have ${mean.length}/${std.length} values for ${channels} channels`);
      const scale = Float32Array.from(std, (s) => 1 / (255 * s));
      const bias = Float32Array.from(mean, (m, c) => -m / std[c]);
      this.affine = {
        device,
        scale: torch.keep(torch.tensor(scale, { shape: [1, channels, 1, 1], device })),
        bias: torch.keep(torch.tensor(bias, { shape: [1, channels, 1, 1], device })),
      };
    }
    return this.affine;
  }
}
