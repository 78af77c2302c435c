// semaim's weighted k-NN against DINO's knn_classifier (scripts/golden_knn.py): the same accuracies on the
// same features, whatever the chunking, with a class that has no training sample.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { knnClassify } from '../../src/eval/knn';

interface Golden {
  numClasses: number;
  dim: number;
  temperature: number;
  train: string;
  trainLabels: number[];
  test: string;
  testLabels: number[];
  results: Record<string, { top1: number; top5: number; perClass: (number | null)[] }>;
}

const golden = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'golden', 'knn', 'knn.json'), 'utf8')) as Golden;

function features(b64: string, labels: number[]) {
  const buf = Buffer.from(b64, 'base64');
  const values = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  return { features: torch.tensor(values, { shape: [labels.length, golden.dim] }), labels: Int32Array.from(labels) };
}

test("weighted k-NN equals DINO's knn_classifier: top-1, top-5 and per-class top-1 at every k and chunk size", () => {
  const train = features(golden.train, golden.trainLabels);
  const testSet = features(golden.test, golden.testLabels);
  try {
    const ks = Object.keys(golden.results).map(Number);
    for (const chunkSize of [256, 7]) {
      const results = knnClassify(train, testSet, { ks, numClasses: golden.numClasses, temperature: golden.temperature, chunkSize, label: null });
      assert.deepEqual(
        results.map((r) => r.k),
        ks,
      );
      for (const r of results) {
        const want = golden.results[String(r.k)];
        const where = `k = ${r.k}, chunks of ${chunkSize}`;
        assert.equal(r.accuracy.top1, want.top1, `${where}: top-1`);
        assert.equal(r.accuracy.top5, want.top5, `${where}: top-5`);
        assert.deepEqual(r.accuracy.perClass, want.perClass, `${where}: per-class top-1`);
      }
    }
  } finally {
    train.features.dispose();
    testSet.features.dispose();
  }
});
