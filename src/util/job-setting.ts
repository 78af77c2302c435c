// A process-wide setting that each job sets while it runs and gives back after it: libtorch's thread
// count, the fused kernels, cuDNN autotuning. Jobs may run at once in one process (and runFinetune runs
// finetune inside it), so a job cannot simply give back the value it found, which may be the setting
// of another job still running: the caller's value is saved by the first job to start and given back
// by the last to end, and while several run, the value is that of the latest started still running.

/** One process-wide setting, read and written through `read` and `write`. */
export class JobSetting<T> {
  private readonly running: { value: T }[] = [];
  private callerValue!: T;

  constructor(
    private readonly read: () => T,
    private readonly write: (value: T) => void,
  ) {}

  /** Sets `value` for a job that begins now; returns the function to call when it ends (once; later calls do nothing). */
  enter(value: T): () => void {
    if (this.running.length === 0) this.callerValue = this.read();
    const mine = { value };
    this.write(value);
    this.running.push(mine);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.running.splice(this.running.indexOf(mine), 1);
      this.write(this.running.length > 0 ? this.running[this.running.length - 1].value : this.callerValue);
    };
  }

  /** Runs `job` with `value` set (see {@link enter}). */
  async during<R>(value: T, job: () => Promise<R>): Promise<R> {
    const leave = this.enter(value);
    try {
      return await job();
    } finally {
      leave();
    }
  }
}
