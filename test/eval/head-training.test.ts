// The epoch loop both probes train their head with (src/eval/head-training.ts): its lr schedule, step
// count and epoch losses against values computed by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { Linear } from '../../src/nn';
import { SGD } from '../../src/optim';
import { HeadTrainingOptions, checkHeadTraining, trainHead } from '../../src/eval/head-training';
import { OptionError } from '../../src/util/options';
import type { ProcessGroup } from '../../src/dist';
import { captureTerminal } from '../output';

/**
 * Trains a Linear(2, 1) head for `o` on batches whose loss is a given number (value(epoch, i)), recording
 * the lr the optimiser holds at each step.
 */
async function trainConstantLosses(o: HeadTrainingOptions, perEpoch: number, value: (epoch: number, i: number) => number | null) {
  torch.manualSeed(0);
  const head = new Linear(2, 1);
  const optimizer = new SGD(head.namedParameters(), { lr: 0.4 });
  const x = torch.keep(torch.ones([1, 2]));
  const lrs: number[] = [];
  let evaluations = 0;
  try {
    const history = await trainHead(
      {
        name: 'probe',
        head,
        optimizer,
        lr: 0.4,
        lrOption: 'lr',
        perEpoch,
        async *batches(epoch: number) {
          for (let i = 0; i < perEpoch; i++) {
            const v = value(epoch, i);
            yield v === null ? null : { x, v };
          }
        },
        inputs: (b) => b.x,
        loss: (b) => {
          lrs.push(optimizer.paramGroups[0].lr);
          return head.forward(b.x).sum().mul(0).add(b.v);
        },
        release: () => {},
        metric: 'top1',
        evaluate: () => (evaluations++, 0),
      },
      { label: null, ...o },
    );
    return { history, lrs, evaluations };
  } finally {
    x.dispose();
    head.dispose();
  }
}

const close = (a: number[], b: number[], what: string) =>
  assert.ok(a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) < 1e-12), `${what}: [${a}] vs [${b}]`);

test("the lr follows the warm-up + cosine at every step (not once per epoch), and an epoch's loss is the mean of its steps", async () => {
  // peak 0.4, min 0.01, 1 warm-up epoch of 2, 4 steps per epoch: at t = 0, ¼, ½, ¾ the warm-up 0.4·t, then at
  // t = 1, 1¼, 1½, 1¾ the cosine 0.01 + 0.39·½·(1 + cos(π·(t − 1)))
  const { history, lrs } = await trainConstantLosses({ epochs: 2, warmupEpochs: 1, minLr: 0.01 }, 4, (epoch, i) => 1 + 4 * epoch + i);
  const c = (t: number) => 0.01 + 0.39 * 0.5 * (1 + Math.cos(Math.PI * t));
  const expected = [0, 0.1, 0.2, 0.3, 0.4, c(0.25), c(0.5), c(0.75)];
  close(lrs, expected, 'lr per step');
  assert.equal(history.length, 2);
  // losses 1, 2, 3, 4 then 5, 6, 7, 8
  close(
    history.map((h) => h.loss),
    [2.5, 6.5],
    'mean loss per epoch',
  );
  close(
    history.map((h) => h.lr),
    [0.3, c(0.75)],
    "each epoch's last lr",
  );
});

test("a step with nothing to train on (null) is passed over in its place: the later steps keep their lr, the epoch's loss is the mean of the trained steps", async () => {
  // as the first test, the second and seventh batches without a labelled pixel (segprobe)
  const skip = (epoch: number, i: number) => (epoch === 0 && i === 1) || (epoch === 1 && i === 2);
  const { history, lrs } = await trainConstantLosses({ epochs: 2, warmupEpochs: 1, minLr: 0.01 }, 4, (epoch, i) => (skip(epoch, i) ? null : 1 + 4 * epoch + i));
  const c = (t: number) => 0.01 + 0.39 * 0.5 * (1 + Math.cos(Math.PI * t));
  close(lrs, [0, 0.2, 0.3, 0.4, c(0.25), c(0.75)], 'lr per trained step');
  // losses 1, 3, 4 then 5, 6, 8
  close(
    history.map((h) => h.loss),
    [8 / 3, 19 / 3],
    'mean loss per epoch',
  );
});

test('fractional epochs end after ceil(epochs × steps per epoch) steps', async () => {
  // 1.5 epochs of 3 steps: 4.5, so a first epoch of 3 steps and a second of 2
  const { history, lrs } = await trainConstantLosses({ epochs: 1.5 }, 3, () => 1);
  assert.equal(lrs.length, 5);
  assert.equal(history.length, 2);
});

test("data-parallel, the progress line's img/s counts each global batch once: the head's inputs are already every rank's rows", async () => {
  // (both probes assemble the global batch before the step; the rate multiplied it by the ranks again)
  // the monotonic clock the rate is read from, moved by hand
  const realNow = performance.now;
  let clock = 0;
  performance.now = () => clock;
  const group = { rank: 0, worldSize: 2, device: 'cpu', allReduce: async () => {}, anyTrue: async (flag: boolean) => flag } as unknown as ProcessGroup;
  torch.manualSeed(0);
  const head = new Linear(2, 1);
  const x = torch.keep(torch.ones([8, 2])); // a global batch of 8 rows
  try {
    const { stderr } = await captureTerminal(() =>
      trainHead(
        {
          name: 'probe',
          head,
          optimizer: new SGD(head.namedParameters(), { lr: 0.1 }),
          lr: 0.1,
          lrOption: 'lr',
          perEpoch: 3,
          async *batches() {
            for (let i = 0; i < 3; i++) {
              clock += 1000; // each batch takes a second
              yield x;
            }
          },
          inputs: (b) => b,
          loss: (b) => head.forward(b).sum(),
          release: () => {},
          metric: 'top1',
          evaluate: () => 0,
        },
        { epochs: 1, label: 'probe', group },
      ),
    );
    const line = stderr.split('\r\x1b[K').find((l) => l.startsWith('probe [') && l.includes('] 2/3 |'));
    assert.ok(line, `no line at step 2 in:\n${stderr}`);
    assert.match(line, /\| img\/s 8\.0 \|/, '16 rows in 2 s');
  } finally {
    performance.now = realNow;
    x.dispose();
    head.dispose();
  }
});

test('evalEvery evaluates every N epochs but the last (its caller evaluates after it); a loss of ±Inf stops the training as NaN does; epochs > 0', async () => {
  const { history, evaluations } = await trainConstantLosses({ epochs: 4, evalEvery: 2 }, 2, () => 1);
  assert.equal(evaluations, 1);
  assert.deepEqual(
    history.map((h) => 'top1' in h),
    [false, true, false, false],
  );
  await assert.rejects(
    trainConstantLosses({ epochs: 2 }, 2, () => Infinity),
    (e: Error) => e instanceof OptionError && /the probe loss became NaN\/Inf in epoch 1/.test(e.message),
  );
  assert.throws(() => checkHeadTraining('probe', { batchSize: 1, epochs: 0 }), /probe: epochs must be > 0, got 0/);
});
