// The last step of every export: its files written together into the output folder.
import { claimOutputs } from '../io/outputs';
import { commitStagedUnlessAborted, type StagedFile } from '../util/safe-write';
import { inOutputFolder } from '../util/output-folder';

/**
 * Makes `folder` (taken back, if new and still empty, when this fails), claims `outputs` so that another
 * export to the same files refuses rather than interleaving its renames with ours, then commits the staged
 * files as one: all of them, or (a full disk, a stop signal) none. Without `overwrite`, outputs another
 * process wrote since the export checked them (before its conversion) are refused once they are claimed, and kept.
 */
export async function commitExport(
  folder: string,
  outputs: string[],
  stagers: (() => StagedFile)[],
  signal: AbortSignal | undefined,
  overwrite: boolean,
): Promise<void> {
  await inOutputFolder(folder, async () => {
    const release = claimOutputs(outputs, 'out', overwrite);
    try {
      await commitStagedUnlessAborted(stagers, signal);
    } finally {
      release();
    }
  });
}
