import { readdirSync } from 'node:fs';

/** Whether a process with this id is alive on this machine (signal 0 tests without sending; this process is). Ids of 0 or below are no process. */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // kill(0) and kill(-n) signal process groups, which "exist"
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Names in `dir` that `pattern` matches with a process id as its first group, of processes no longer alive. */
export function namesOfDeadProcesses(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir).filter((name) => {
    const m = pattern.exec(name);
    return m !== null && !processAlive(Number(m[1]));
  });
}
