// Sharded tar datasets (WebDataset layout): opening, streaming loader, packing, and the plans.
export { shardDataset, isShardDataset, type ShardDataset, type ShardDatasetOptions } from './dataset';
export { ShardLoader, DEFAULT_SHUFFLE_BUFFER, type ShardLoaderOptions, type ShardEpochSummary } from './loader';
export { packImageFolder, shardName, sampleKey, DEFAULT_SHARD_SIZE, type PackOptions, type PackResult } from './pack';
export { expandBraces, resolveShardPaths, SHARD_SUFFIXES } from './paths';
export { loadShardTable, scanShards, readIndexFile, INDEX_FILE, INDEX_FORMAT, type ShardEntry, type ShardIndexFile, type ShardTable } from './shard-index';
export { readShard, ShardReadError, MAX_CLASSES, MAX_IMAGE_BYTES, MAX_META_BYTES, imageMemberCap, type TarSample } from './tar-samples';
export { shardEpochPlan, shardEpochSize, streamSegments, type ShardEpochPlan, type WorkerPiece, type ShardSegment } from './plan';
export { ShuffleBuffer, replay } from './shuffle-buffer';
