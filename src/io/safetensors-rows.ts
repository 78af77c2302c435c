// A safetensors file written row by row: one tensor grows along its first dimension as batches
// arrive (memory stays one batch), small tensors known only at the end (labels, indices) follow it,
// and the header is written last, into space reserved before the rows. The bytes go to
// `<path>.partial`, renamed to `path` only when complete, so an interrupted run leaves no file that
// looks finished. The header is padded with spaces, as the format allows, and the data section is
// tiled exactly, as strict readers (Python's safetensors) demand.
import * as fs from 'node:fs';
import { DType, DTYPE_TO_SAFETENSORS, TensorEntry, tensorByteLength } from './safetensors';
import { StagedFile, writeError } from '../util/safe-write';
import { MAX_IO_BYTES } from './read-at';
import { removeOnStopSignal } from '../util/remove-on-stop-signal';

/** The tensor a {@link SafetensorsRowWriter} grows: its name, dtype and the shape of one row. */
export interface RowTensorSpec {
  name: string;
  dtype: DType;
  /** Shape of one row (the tensor is [rows, ...rowShape]). */
  rowShape: number[];
}

/** Options of {@link SafetensorsRowWriter}. */
export interface RowWriterOptions {
  /** Bytes set aside for the header (default 64 KiB); a larger final header costs one copy of the data. */
  headerReserve?: number;
}

/** Header bytes (JSON padded with spaces so that the data section starts at a multiple of 8), at least `minLength` long. */
function headerBytes(header: Record<string, unknown>, minLength = 0): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  let n = Math.max(json.length, minLength);
  n += (8 - ((8 + n) % 8)) % 8;
  const out = Buffer.alloc(8 + n, 0x20);
  out.writeBigUInt64LE(BigInt(n), 0);
  json.copy(out, 8);
  return out;
}

/** The names writeSafetensors refuses: a tensor named '__metadata__' would be read as the file's metadata. */
function checkTensorName(name: string): void {
  if (name === '__metadata__') throw new Error(`SafetensorsRowWriter: '__metadata__' is reserved and cannot be a tensor name`);
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.byteLength;) done += fs.writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, MAX_IO_BYTES), position + done);
}

/**
 * Writes a safetensors file whose main tensor grows one batch of rows at a time (`append`), with small tensors
 * and the header added by `finish`; the bytes go to `<path>.partial`, renamed to `path` when complete, and
 * a SIGINT/SIGTERM the process does not handle deletes the partial file. `semaim embed` writes its features with it.
 */
export class SafetensorsRowWriter {
  readonly path: string;
  readonly partialPath: string;
  readonly rowBytes: number;
  private fd: number | null;
  private readonly dataStart: number;
  private count = 0;

  constructor(
    path: string,
    readonly spec: RowTensorSpec,
    o: RowWriterOptions = {},
  ) {
    if (!DTYPE_TO_SAFETENSORS[spec.dtype]) throw new Error(`SafetensorsRowWriter: unknown dtype '${spec.dtype}'`);
    checkTensorName(spec.name);
    this.rowBytes = tensorByteLength(spec.dtype, spec.rowShape);
    this.path = path;
    this.partialPath = `${path}.partial`;
    this.dataStart = headerBytes({}, o.headerReserve ?? 65536).byteLength;
    try {
      // a new file, never through a link planted at the name (that would write the rows into its target)
      fs.rmSync(this.partialPath, { force: true });
      this.fd = fs.openSync(this.partialPath, 'wx+');
    } catch (e) {
      throw writeError(path, e);
    }
    this.stopListening = removeOnStopSignal(() => this.abort());
  }

  /** Unregisters the removal of the partial file on a stop signal (once the file is finished or aborted). */
  private readonly stopListening: () => void;

  /** Rows written so far. */
  get rows(): number {
    return this.count;
  }

  /** Appends whole rows (row-major bytes of [k, ...rowShape]). */
  append(bytes: Uint8Array): void {
    if (this.fd === null) throw new Error(`SafetensorsRowWriter: ${this.path} is already finished or aborted`);
    if (bytes.byteLength % this.rowBytes !== 0) {
      throw new Error(`SafetensorsRowWriter: ${bytes.byteLength} bytes are not whole rows of ${this.rowBytes} bytes ('${this.spec.name}')`);
    }
    try {
      writeAll(this.fd, bytes, this.dataStart + this.count * this.rowBytes);
    } catch (e) {
      throw writeError(this.path, e);
    }
    this.count += bytes.byteLength / this.rowBytes;
  }

  /**
   * Writes `tail` (tensors after the rows), the header with `metadata`, and renames the file into
   * place. Returns the final path.
   */
  finish(tail: Record<string, TensorEntry> = {}, metadata: Record<string, string> = {}): string {
    this.stage(tail, metadata).commit();
    return this.path;
  }

  /**
   * finish up to the rename: the partial file complete and fsynced, to commit (with commitFiles, beside
   * the files that describe it) or abort. The file is the StagedFile's from here on: this writer stops
   * watching for stop signals (commitFiles renames a set of files itself, without calling commit).
   */
  stage(tail: Record<string, TensorEntry> = {}, metadata: Record<string, string> = {}): StagedFile {
    if (this.fd === null) throw new Error(`SafetensorsRowWriter: ${this.path} is already finished or aborted`);
    const fd = this.fd;
    try {
      const header: Record<string, unknown> = Object.create(null); // a tensor may be named '__proto__', as in writeSafetensors
      header.__metadata__ = metadata;
      let end = this.count * this.rowBytes;
      header[this.spec.name] = { dtype: DTYPE_TO_SAFETENSORS[this.spec.dtype], shape: [this.count, ...this.spec.rowShape], data_offsets: [0, end] };
      const tails = Object.entries(tail).filter(([name]) => name !== this.spec.name);
      if (tails.length !== Object.keys(tail).length) throw new Error(`SafetensorsRowWriter: tail tensor '${this.spec.name}' clashes with the row tensor`);
      for (const [name, t] of tails) {
        checkTensorName(name);
        const n = tensorByteLength(t.dtype, t.shape);
        if (n !== t.data.byteLength)
          throw new Error(`SafetensorsRowWriter: tensor '${name}' [${t.shape}] ${t.dtype} needs ${n} bytes, got ${t.data.byteLength}`);
        writeAll(fd, t.data, this.dataStart + end);
        header[name] = { dtype: DTYPE_TO_SAFETENSORS[t.dtype], shape: t.shape, data_offsets: [end, end + n] };
        end += n;
      }
      const head = headerBytes(header, this.dataStart - 8);
      if (head.byteLength === this.dataStart) {
        writeAll(fd, head, 0);
        fs.ftruncateSync(fd, this.dataStart + end);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        this.fd = null;
      } else {
        this.rewriteWithHeader(head, end);
      }
    } catch (e) {
      this.abort();
      throw writeError(this.path, e);
    }
    this.stopListening();
    return {
      path: this.path,
      tmp: this.partialPath,
      commit: () => {
        try {
          fs.renameSync(this.partialPath, this.path);
        } catch (e) {
          this.abort();
          throw writeError(this.path, e);
        }
      },
      abort: () => this.abort(),
    };
  }

  /** Closes and deletes the partial file. */
  abort(): void {
    this.stopListening();
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    fs.rmSync(this.partialPath, { force: true });
  }

  /** The header outgrew its reserve: copy the data after a new header (one pass over the data). */
  private rewriteWithHeader(head: Uint8Array, dataLength: number): void {
    const fd = this.fd!;
    const moved = `${this.partialPath}.moved`;
    try {
      fs.rmSync(moved, { force: true });
      const out = fs.openSync(moved, 'wx'); // (not through a link planted at the name)
      try {
        writeAll(out, head, 0);
        const chunk = Buffer.alloc(Math.min(Math.max(dataLength, 1), 16 << 20));
        for (let pos = 0; pos < dataLength;) {
          const k = fs.readSync(fd, chunk, 0, Math.min(chunk.byteLength, dataLength - pos), this.dataStart + pos);
          if (k <= 0) throw new Error(`SafetensorsRowWriter: ${this.partialPath} ended early`);
          writeAll(out, chunk.subarray(0, k), head.byteLength + pos);
          pos += k;
        }
        fs.fsyncSync(out);
      } finally {
        fs.closeSync(out);
      }
      fs.closeSync(fd);
      this.fd = null;
      fs.renameSync(moved, this.partialPath);
    } catch (e) {
      fs.rmSync(moved, { force: true });
      throw e;
    }
  }
}
