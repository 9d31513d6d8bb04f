"""Train the metrics classifier on the bundled sample and write data/mnist_classifier.safetensors.

    python benchmarks/train_classifier.py [--epochs 8] [--seed 0]

Prints the test accuracy per epoch; the final one is stored in the file's metadata and in
data/mnist_classifier.json.
"""

import argparse
import platform
import time

import torch

from ddpm_lessons.checkpoints import write_json
from ddpm_lessons.metrics import CLASSIFIER_PATH, save_classifier, train_classifier

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

start = time.perf_counter()
model, acc = train_classifier(epochs=args.epochs, seed=args.seed)
record = {
    "what": "MNISTClassifier for ddpm_lessons.metrics",
    "trained_on": "bundled mnist_sample.npz, split='train' (8,000 digits), random shifts of up to 2 px",
    "test_accuracy": round(acc, 4),
    "test_set": "bundled mnist_sample.npz, split='test' (2,000 digits)",
    "command": f"python benchmarks/train_classifier.py --epochs {args.epochs} --seed {args.seed}",
    "seconds": round(time.perf_counter() - start, 1),
    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
}
save_classifier(model, CLASSIFIER_PATH, record)
write_json(CLASSIFIER_PATH.with_suffix(".json"), record)
print(record)
