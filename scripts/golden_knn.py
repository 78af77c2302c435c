#!/usr/bin/python3
"""Golden k-NN accuracies from DINO's weighted k-NN classifier (eval_knn.py `knn_classifier`, which the
SemAIM authors' main_knn.py copies), written here from that code with PyTorch (Debian 12: torch 1.13).

Run:  /usr/bin/python3 scripts/golden_knn.py
Writes test/golden/knn/knn.json: train and test features (float32, little-endian, base64; rescaled per row
at random, so that only the L2 normalisation makes them comparable), labels (class 7 has no training
sample), and per k: top-1, top-5 and per-class top-1. test/eval/knn-golden.test.ts runs semaim's k-NN on
the same features. k >= 5 only: below it DINO's "top-5" counts top-k (docs/METHOD.md section 6.4).
"""
import base64
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'knn', 'knn.json')
C, D, N_TRAIN, N_TEST, T = 8, 16, 240, 120, 0.07
KS = (5, 10, 20, 30, 200)


def knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes):
    """DINO's knn_classifier (features already L2-normalised), with per-class top-1 added."""
    top1, top5, total = 0.0, 0.0, 0
    per_hit, per_n = [0] * num_classes, [0] * num_classes
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 7
    imgs_per_chunk = num_test_images // num_chunks
    retrieval_one_hot = torch.zeros(k, num_classes)
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx: min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx: min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)), 1)
        _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
        for i in range(batch_size):
            per_n[targets[i]] += 1
            per_hit[targets[i]] += correct[i, 0].item()
    per_class = [h / n if n else None for h, n in zip(per_hit, per_n)]
    return top1 / total, top5 / total, per_class


def b64(t):
    return base64.b64encode(t.numpy().astype('<f4').tobytes()).decode()


def main():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(C, D, generator=g)
    y_train = torch.randint(0, C - 1, (N_TRAIN,), generator=g)  # class C-1 never in training
    y_test = torch.randint(0, C, (N_TEST,), generator=g)
    x_train = (centres[y_train] * 0.7 + torch.randn(N_TRAIN, D, generator=g)) * (0.1 + 5 * torch.rand(N_TRAIN, 1, generator=g))
    x_test = (centres[y_test] * 0.7 + torch.randn(N_TEST, D, generator=g)) * (0.1 + 5 * torch.rand(N_TEST, 1, generator=g))
    results = {}
    for k in KS:
        top1, top5, per_class = knn_classifier(F.normalize(x_train, dim=1), y_train, F.normalize(x_test, dim=1), y_test, k, T, C)
        results[str(k)] = dict(top1=top1, top5=top5, perClass=per_class)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(dict(numClasses=C, dim=D, temperature=T, train=b64(x_train), trainLabels=y_train.tolist(),
                       test=b64(x_test), testLabels=y_test.tolist(), results=results), f, indent=1)
        f.write('\n')
    print(f'wrote {OUT}: ' + ', '.join(f'k={k} top-1 {v["top1"]:.4f}' for k, v in results.items()))


if __name__ == '__main__':
    main()
