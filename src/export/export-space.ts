// The free-space check of the exports (safetensors, ONNX, web): their bytes are known before any is
// written (the weights' size, the ONNX model built in memory, the page and runtime files), and a disk
// that cannot hold them is refused before the first, as pretrain and embed refuse theirs.
import { checkFreeSpace } from '../util/disk-space';

/** The bytes of files about to be written. */
export function filesBytes(files: [string, string | Uint8Array][]): number {
  return files.reduce((n, [, data]) => n + (typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength), 0);
}

/** Refuses (code 'ENOSPC', before anything is written) an export of `needed` bytes to `out` that the disk of `dir` cannot hold; SEMAIM_NO_SPACE_CHECK=1 skips it. */
export function checkExportSpace(dir: string, needed: number, out: string, how: string): void {
  checkFreeSpace(dir, needed, `the export to ${out}`, { how, remedy: 'Free space, or write --out elsewhere' });
}
