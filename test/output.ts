// Running a function with the process's stdout and stderr captured or silenced: the progress lines,
// notes, tables and summaries the tests read.
type Sink = 'capture' | 'silence';

async function redirected<T>(fn: () => Promise<T>, stdout: Sink, stderr: Sink): Promise<{ result: T; stdout: string; stderr: string }> {
  const written = { stdout: [] as string[], stderr: [] as string[] };
  const [out, err] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr)];
  const sink = (into: string[], how: Sink) =>
    ((chunk: string | Uint8Array) => (how === 'capture' ? into.push(String(chunk)) > 0 : true)) as typeof process.stdout.write;
  process.stdout.write = sink(written.stdout, stdout);
  process.stderr.write = sink(written.stderr, stderr);
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
