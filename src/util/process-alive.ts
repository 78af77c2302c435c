import { readFileSync, readdirSync } from 'node:fs';

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

/**
 * Which process `pid` is, beyond its id, on Linux: this boot's id and the process's start in clock ticks
 * since the boot (/proc), which no later process with the same id has; null where /proc does not say.
 * A lock records its holder's, so that a process that reused the id (a restarted container's processes
 * start with the same small ids) is not taken for the holder.
 */
export function processIdentity(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const startTicks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]; // field 22, after the command's "(...)"
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return /^\d+$/.test(startTicks) && boot ? `${boot}:${startTicks}` : null;
  } catch {
    return null;
  }
}

/**
 * Whether the process that recorded itself as (`pid`, `identity`) is alive: a live process with the id
 * but another processIdentity got the id since (a restarted container's) and is not it. Without a
 * recorded identity (files written before it was recorded, machines without /proc) any live process
 * with the id is taken for it.
 */
export function recordedProcessAlive(pid: number, identity: string | undefined): boolean {
  if (!processAlive(pid)) return false;
  const now = identity === undefined ? null : processIdentity(pid);
  return now === null || now === identity;
}

let own: string | null | undefined;

/** This process's processIdentity, as a lock or journal records it (undefined where /proc does not say); read once. */
export function ownProcessIdentity(): string | undefined {
  if (own === undefined) own = processIdentity(process.pid);
  return own ?? undefined;
}
