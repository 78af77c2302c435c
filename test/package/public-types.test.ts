// The types a caller implements or names (a segmentation data factory, the options objects of exported
// functions, resolveOptions' return type, torch.tensor's nested arrays) are exported by their public
// names from the entry points beside the functions that take them: a user's strict build names them.
// (scripts/unexported-types.js lists the types public signatures name that no entry point exports.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageProject, typeErrors } from './type-check';

const USER_CODE = `
import type { KNN_OPTIONS, Options, OptionTable, OptionValues, OptionErrorCode, StopRequest, SegDataFactory, SegprobeFile, SegRow,
  SegprobeCommandOptions, SegprobeSettings, SegDataSettings, data, torch } from 'semaim';
import type { SegData, SegDataRequest, SegBatch, SegBatchOptions, SegAugment, SegSkip, SkipSummary, ImageOpenOptions, DecodeRequest,
  Rect, ResizeSpec, CenterCropSpec, RandomCropSpec, RandomResizedCropSpec, HorizontalFlipSpec, RandAugmentSpec, RandomErasingSpec,
  IdxArray, SyntheticConfig, RankPlanOptions, ShardDatasetOptions } from 'semaim/data';
import type { SegDataFactory as EvalSegDataFactory, SegprobeFile as EvalSegprobeFile } from 'semaim/eval';
import type { Nested, F } from 'semaim/torch';
import type { StagedFile } from 'semaim/io';
import type { Options as TrainOptions, StopRequest as TrainStopRequest } from 'semaim/train';
import { KNN_OPTIONS as KNN_TABLE, exportWeb, pretrain, resolveOptions, runFinetune, runKnn, runLinprobe } from 'semaim';

// a caller's own segmentation data, for runSegprobe and DataFactories.makeSegData
declare function mySegData(request: SegDataRequest): SegData;
export const factory: SegDataFactory = (r: data.SegDataRequest): data.SegData => mySegData(r);
export const same: EvalSegDataFactory = factory;
export const batches = (d: SegData, o: SegBatchOptions): AsyncIterable<SegBatch> => d.batches(o);
export const open: ImageOpenOptions = { maxPixels: 0 };
export const region: DecodeRequest['region'] = {} as Rect;
export const rows: Nested = [[1, 2], [3, 4]];
export const kernel: F.Pair = [3, 3];
export function knnOptions(o: Options<typeof KNN_OPTIONS>): TrainOptions<typeof KNN_OPTIONS> {
  return o;
}
// README "Library use": a job takes a plain object, the required options and any others (the rest take their defaults),
// or resolveOptions' result; exportWeb's options, all with defaults, may be left out
export async function plainJobs(train: data.TrainData, factories: typeof data.DATA_FACTORIES): Promise<void> {
  await pretrain({ dataset: 'synthetic', imgSize: 32, patchSize: 8, maxSteps: 2, outDir: 'runs/t', precision: 'auto' }, train);
  await runKnn({ checkpoint: 'runs/t', dataset: 'synthetic', outDir: 'runs/t-knn' }, factories);
  await runKnn(resolveOptions(KNN_TABLE, { checkpoint: 'runs/t' }), factories);
  await runLinprobe({ checkpoint: 'runs/t' }, factories);
  // @ts-expect-error the checkpoint is required
  await runLinprobe({ dataset: 'synthetic' }, factories);
  await runFinetune({ checkpoint: 'runs/t', epochs: 1 }, factories);
  await exportWeb('runs/t', 'runs/t-web');
}
export const stop: StopRequest = { requested: false } satisfies TrainStopRequest;
export type Named = [OptionTable, OptionValues, OptionErrorCode, SegprobeFile, EvalSegprobeFile, SegRow, SegprobeCommandOptions,
  SegprobeSettings, SegDataSettings, SegAugment, SegSkip, SkipSummary, ResizeSpec, CenterCropSpec, RandomCropSpec, RandomResizedCropSpec,
  HorizontalFlipSpec, RandAugmentSpec, RandomErasingSpec, IdxArray, SyntheticConfig, RankPlanOptions, ShardDatasetOptions, StagedFile,
  typeof torch.tensor];
`;

test('the types a caller implements or names are exported by their public names (strict type-check against the package)', { timeout: 5 * 60_000 }, () => {
  const work = packageProject('semaim-public-types-');
  try {
    const file = join(work, 'user.ts');
    writeFileSync(file, USER_CODE);
    assert.deepEqual(typeErrors([file]), []);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
