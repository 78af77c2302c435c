// `semaim object-start`: where the semantic order starts on the synthetic objects, at initialisation
// and over pre-training, with S from [CLS] cosine / mean-token cosine / [CLS] attention.
import { defineCommand } from './command';
import { checkSeedList } from '../util/options';
import { OBJECT_STUDY_OPTIONS, checkTestSize, objectStartStudy, parseTrainTokens, studyPretrainOptions } from '../experiments/object-start-study';
import { validatePretrain } from '../train/pretrain-options';
import { abortOnStopSignals } from '../run/signals';
import { quotedPath } from '../util/printable';

export const objectStartCommand = defineCommand({
  summary: 'how often the semantic order starts on the object (synthetic objects), for S = cls / gap / self, over pre-training',
  usage: 'semaim object-start [options]',
  description:
    'Pre-trains one model per --train-tokens on fresh synthetic objects, then scores the initialisation and evenly\n' +
    'spaced checkpoints: the share of test images whose first predicted patch lies on the object, with S from each of\n' +
    "cls (the paper), gap and self (the authors' alternatives), against a random centre. Writes <out-dir>/object-start.md\n" +
    'and .json; run again with the same --out-dir to continue interrupted pre-trainings.',
  options: OBJECT_STUDY_OPTIONS,
  validate: (o) => {
    checkTestSize(o);
    checkSeedList(o);
    for (const t of parseTrainTokens(o.trainTokens)) validatePretrain(studyPretrainOptions(o, t));
  },
  async run(o) {
    const r = await abortOnStopSignals(
      (signal) => objectStartStudy(o, undefined, signal),
      undefined,
      'stopping after this step and its checkpoint, or before the next checkpoint is scored; object-start.md and .json are not written',
    );
    process.stdout.write(`${r.markdown}\nwrote ${quotedPath(`${o.outDir}/object-start.md`)} and object-start.json\n`);
    return 0;
  },
});
