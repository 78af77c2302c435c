// A dataset of WebDataset-style tar shards: what `--dataset shards --data-path ...` opens. Only the
// shard list and its index are read here; the samples are streamed by the ShardLoader's workers.

import { refuseUnknownKeys } from '../../util/options';
import { resolveShardPaths } from './paths';
import { loadShardTable, type ShardTable } from './shard-index';

/**
 * A dataset of WebDataset-style tar shards, as {@link shardDataset} opens it: the shard list and its index,
 * known without reading the samples, which a ShardLoader streams.
 */
export interface ShardDataset {
  readonly kind: 'shards';
  /** The data path as given, for messages. */
  readonly root: string;
  readonly table: ShardTable;
  /** Samples in all shards. */
  readonly length: number;
  /** Class names (index = label); empty for unlabelled shards. */
  readonly classes: readonly string[];
  /** Images may differ in size. */
  readonly fixedSize: null;
  readonly hasMasks: false;
}

/** Options of {@link shardDataset}: the split that `{split}` stands for, and where warnings go (default stderr). */
export interface ShardDatasetOptions {
  /** Replaces `{split}` in the path; a folder with one sub-folder per split uses the split's. */
  split?: string;
  onWarning?: (line: string) => void;
}

/** Opens shards named by a brace pattern, a comma-separated list or a folder (see paths.ts). */
export function shardDataset(dataPath: string, opts: ShardDatasetOptions = {}): ShardDataset {
  refuseUnknownKeys(opts, ['split', 'onWarning'] satisfies (keyof ShardDatasetOptions)[]);
  const paths = resolveShardPaths(dataPath, opts.split);
  const table = loadShardTable(paths, { onWarning: opts.onWarning });
  return { kind: 'shards', root: dataPath, table, length: table.total, classes: table.classes, fixedSize: null, hasMasks: false };
}

/** Whether a value is a {@link ShardDataset} (its `kind` is 'shards') rather than an indexed Dataset. */
export function isShardDataset(d: unknown): d is ShardDataset {
  return typeof d === 'object' && d !== null && (d as { kind?: unknown }).kind === 'shards';
}
