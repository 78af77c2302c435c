// Running a function with the process's stdout and stderr captured or silenced: the progress lines,
// notes, tables and summaries the tests read.
type Sink = 'capture' | 'silence';

/**
 * Whether a chunk written to stdout is the test runner's: under `node --test` each file reports its tests
 * to the parent as v8-serialised Buffers on stdout, and a redirect that swallowed them made the tests of
 * the file that had finished meanwhile vanish from the count (never failed, never passed). The tool's own
 * output is text.
 */
export function isRunnerMessage(chunk: unknown): boolean {
  return typeof chunk !== 'string';
}

type Write = typeof process.stdout.write;

async function redirected<T>(fn: () => Promise<T>, stdout: Sink, stderr: Sink): Promise<{ result: T; stdout: string; stderr: string }> {
  const written = { stdout: [] as string[], stderr: [] as string[] };
  const [out, err] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr)];
  const sink = (into: string[], how: Sink, original: Write) =>
    ((chunk: string | Uint8Array, ...rest: never[]) =>
      isRunnerMessage(chunk) ? original(chunk, ...rest) : how === 'capture' ? into.push(String(chunk)) > 0 : true) as Write;
  process.stdout.write = sink(written.stdout, stdout, out);
  process.stderr.write = sink(written.stderr, stderr, err);
  try {
    return { result: await fn(), stdout: written.stdout.join(''), stderr: written.stderr.join('') };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

/** Runs fn with stderr captured (progress lines, notes) and stdout silenced. */
export async function captureStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const { result, stderr } = await redirected(fn, 'silence', 'capture');
  return { result, stderr };
}

/** Runs fn with stdout captured (a command's table and summary) and stderr silenced. */
export async function printed<T>(fn: () => Promise<T>): Promise<{ result: T; stdout: string }> {
  const { result, stdout } = await redirected(fn, 'capture', 'silence');
  return { result, stdout };
}

/** Runs fn with stdout and stderr silenced (a command's table, warnings and progress). */
export async function quiet<T>(fn: () => Promise<T>): Promise<T> {
  return (await redirected(fn, 'silence', 'silence')).result;
}

/** Runs fn with stderr taken for a wide terminal (a progress line redraws at every update) and captured. */
export async function captureTerminal<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const err = process.stderr as NodeJS.WriteStream & { isTTY: boolean };
  const [isTTY, columns, term] = [err.isTTY, err.columns, process.env.TERM];
  Object.assign(err, { isTTY: true, columns: 300 });
  process.env.TERM = 'xterm';
  try {
    return await captureStderr(fn);
  } finally {
    Object.assign(err, { isTTY, columns });
    if (term === undefined) delete process.env.TERM;
    else process.env.TERM = term;
  }
}
