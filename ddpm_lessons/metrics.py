"""Measuring samples: a small MNIST classifier, conditional accuracy, and a Frechet distance in its
feature space (FID's recipe with a digit classifier in place of Inception), always beside the
real-vs-real baseline at the same sample count, so that every number has its floor next to it.

The classifier's weights ship in ``data/mnist_classifier.safetensors``; ``train_classifier``
rebuilds them from the bundled training split (see ``benchmarks/train_classifier.py``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.data import REPO_DATA, from_uint8, load_mnist

CLASSIFIER_PATH = REPO_DATA / "mnist_classifier.safetensors"


class MNISTClassifier(nn.Module):
    """Two conv blocks and two linear layers; ``features`` is the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
        )  # fmt: skip
        self.fc = nn.Linear(64 * 7 * 7, 64)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [-1, 1] -> (B, 64)."""
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))  # (B, 10) logits


def _shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to max_shift pixels (background is -1), a cheap augmentation."""
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + 28, dx : dx + 28]
    return out


def train_classifier(epochs: int = 8, seed: int = 0, batch_size: int = 128, log=print) -> tuple[MNISTClassifier, float]:
    """Train on the bundled sample's 8,000 training digits; return (model, accuracy on its 2,000 test digits)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_mnist("train", source="bundled")
    x_test, y_test = load_mnist("test", source="bundled")
    model = MNISTClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x_train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(len(x_train) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(model(_shift(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, x_test, y_test)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, test accuracy {acc:.4f}")
    return model.eval(), acc


@torch.no_grad()
def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    preds = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    return (preds == labels).float().mean().item()


def save_classifier(model: MNISTClassifier, path: Path, record: dict) -> None:
    """fp16 weights (the file stays under 1 MB) with a JSON record of how they were made."""
    from safetensors.torch import save_file

    save_file(
        {k: v.half() for k, v in model.state_dict().items()},
        str(path),
        metadata={"record": json.dumps(record)},
    )


def load_classifier(path: str | Path = CLASSIFIER_PATH) -> MNISTClassifier:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"classifier weights {path} are missing; rebuild them with `python benchmarks/train_classifier.py`"
        )
    model = MNISTClassifier()
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.eval()


def _as_images(images) -> torch.Tensor:
    """Accept uint8 (N, 28, 28) / (N, 1, 28, 28) or floats in [-1, 1]; return float (N, 1, 28, 28)."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"MNIST metrics need images of shape (N, 1, 28, 28) or (N, 28, 28), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return from_uint8(images)
    if images.is_floating_point() and images.numel():
        low, high = images.min().item(), images.max().item()
        if low < -1.5 or high > 1.5 or low >= 0:  # digits in [-1, 1] have a background at -1
            raise ValueError(
                f"MNIST metrics take uint8 pixels or floats in [-1, 1]; these floats run from {low:.3g} to {high:.3g}. "
                "Pixels in [0, 1] need 2 x - 1, pixels in [0, 255] need x / 127.5 - 1 (or pass them as uint8)"
            )
    return images.float().clamp(-1, 1)


@torch.no_grad()
def classify(images, classifier: MNISTClassifier | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted digits (N,) and features (N, 64)."""
    classifier = classifier or load_classifier()
    images = _as_images(images)
    feats = torch.cat([classifier.features(c) for c in images.split(1000)])
    return classifier.head(feats).argmax(1), feats


def conditional_accuracy(images, labels, classifier: MNISTClassifier | None = None) -> float:
    """Share of samples that the classifier assigns to the digit that was asked for."""
    preds, _ = classify(images, classifier)
    return (preds == torch.as_tensor(labels).long()).float().mean().item()


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID):

        d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})

    tr((S_a S_b)^{1/2}) is computed as the sum of square roots of the eigenvalues of the
    symmetric matrix S_a^{1/2} S_b S_a^{1/2}, which has the same eigenvalues as S_a S_b.

    With fewer points than features (150 samples in Inception's 2,048 dimensions) the D x D route takes
    seconds, and S_a S_b has at most min(N_a, N_b) nonzero eigenvalues. With A and B the centred features
    (rows are points), S_a S_b = A^T A B^T B / ((N_a - 1)(N_b - 1)) has the nonzero eigenvalues of
    (A B^T)(A B^T)^T, so tr((S_a S_b)^{1/2}) is the sum of A B^T's singular values over
    sqrt((N_a - 1)(N_b - 1)): the same number from an N_a x N_b matrix (6 ms instead of 2.3 s at 150 x 2,048
    on 2 cores).
    """
    a, b = feats_a.double(), feats_b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"frechet_distance needs two (N, D) feature sets with N >= 2, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    centred_a, centred_b = a - mu_a, b - mu_b
    dof_a, dof_b = len(a) - 1, len(b) - 1
    trace_a, trace_b = centred_a.pow(2).sum() / dof_a, centred_b.pow(2).sum() / dof_b
    if a.shape[1] <= min(len(a), len(b)):
        cov_a, cov_b = centred_a.T @ centred_a / dof_a, centred_b.T @ centred_b / dof_b
        evals, evecs = torch.linalg.eigh(cov_a)
        sqrt_a = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
        cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    else:
        cross = torch.linalg.svdvals(centred_a @ centred_b.T).sum() / (dof_a * dof_b) ** 0.5
    return ((mu_a - mu_b).pow(2).sum() + trace_a + trace_b - 2 * cross).item()


def diversity(feats: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Mean Euclidean distance between two different samples of the same class, in feature space.

    It is 0 when every sample of a class is the same image and grows with the spread; with no labels
    all samples count as one class. feats: (N, D); labels: (N,).
    """
    labels = torch.zeros(len(feats), dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
    per_class = []
    for c in labels.unique():
        f = feats[labels == c].double()
        if len(f) >= 2:
            d = torch.cdist(f, f)  # (n_c, n_c), zero diagonal
            per_class.append(d.sum() / (len(f) * (len(f) - 1)))
    if not per_class:
        raise ValueError("diversity needs at least two samples of one class")
    return torch.stack(per_class).mean().item()


def _real_features(classifier: MNISTClassifier) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of the bundled training digits (8,000, 64), their labels, and the held-out ones' (2,000, 64)."""
    x_train, y_train = load_mnist("train", source="bundled")
    x_ref, _ = load_mnist("test", source="bundled")
    return classify(x_train, classifier)[1], y_train, classify(x_ref, classifier)[1]


@functools.lru_cache(maxsize=1)
def _shipped_real_features() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``_real_features`` of the shipped classifier, computed once per process (10 s on 2 cores)."""
    return _real_features(load_classifier())


def frechet_with_floor(
    sample_feats: torch.Tensor, draws: list[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, float | int]:
    """The Frechet distance of samples and its real-vs-real floor, over several draws of real data.

    Each draw is a pair (reference features, other real features of as many images as there are samples):
    the samples' distance to the reference, and the floor, the other real images' distance to it. Returns the
    means over the draws with their standard deviations and the ratio of the means. Every distance in the
    course (metrics.evaluate_samples for digits, fid.frechet_distance_images for any images) is read this
    way, with these keys.
    """
    if not draws:
        raise ValueError("frechet_with_floor needs at least one draw of real data")
    fds = torch.tensor([frechet_distance(sample_feats, ref) for ref, _ in draws], dtype=torch.float64)
    floors = torch.tensor([frechet_distance(other, ref) for ref, other in draws], dtype=torch.float64)
    fd, floor = fds.mean().item(), floors.mean().item()
    spread = len(draws) > 1
    return {
        "frechet_distance": fd,
        "frechet_distance_sd": fds.std().item() if spread else 0.0,
        "frechet_distance_real_vs_real": floor,  # the floor: the mean over the draws
        "frechet_distance_real_vs_real_sd": floors.std().item() if spread else 0.0,
        "floor_draws": len(draws),
        "frechet_ratio": fd / max(floor, 1e-12),
    }


def floor_indices(y_train: torch.Tensor, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which n training digits one draw of the real-vs-real floor uses: with the samples' labels, as many of
    each digit as the samples hold (the floor then has the samples' class mix, and its distance measures only
    what varies within the classes); without labels, n at random. Returns (n,) indices into the training set."""
    if labels is None:
        return torch.randperm(len(y_train), generator=generator)[:n]
    counts = torch.as_tensor(labels).long().bincount(minlength=int(y_train.max()) + 1)
    chosen = []
    for digit, count in enumerate(counts.tolist()):
        if count == 0:
            continue
        pool = (y_train == digit).nonzero().flatten()
        if count > len(pool):
            raise ValueError(f"{count} samples of digit {digit}, but the bundled training set holds {len(pool)} of "
                             f"them to compare with; draw at most {len(pool)} per digit")  # fmt: skip
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:count]])
    return torch.cat(chosen)


def evaluate_samples(
    images, labels=None, classifier: MNISTClassifier | None = None, seed: int = 0, floor_draws: int = 10
) -> dict[str, float | int]:
    """Every metric with its floor: conditional accuracy and within-class diversity (when labels are
    given), the Frechet distance to the 2,000 held-out bundled digits, and the same distance and
    diversity for n real training digits (the real-vs-real baseline at the same count n).

    With labels, each draw holds as many real digits of each class as the samples do (:func:`floor_indices`):
    a floor drawn at random would mix the classes differently from samples with exactly n/10 per digit, which
    alone moves the distance. One draw is still a noisy floor, so the floor is the mean over ``floor_draws``
    draws (seeds seed, seed + 1, ...), reported with their standard deviation; the ratio divides by the mean.
    """
    if floor_draws < 1:
        raise ValueError(f"floor_draws must be at least 1, got {floor_draws}")
    images = _as_images(images)
    train_feats, y_train, ref_feats = _shipped_real_features() if classifier is None else _real_features(classifier)
    classifier = classifier or load_classifier()
    n = len(images)
    if n > len(train_feats):
        raise ValueError(f"at most {len(train_feats)} samples can be compared with the bundled data, got {n}")
    preds, feats = classify(images, classifier)
    draws = [floor_indices(y_train, n, labels, torch.Generator().manual_seed(seed + k)) for k in range(floor_draws)]
    distance = frechet_with_floor(feats, [(ref_feats, train_feats[idx]) for idx in draws])
    out: dict[str, float | int] = {"n": n, "reference": "bundled MNIST test split (2,000 digits)"}
    if labels is not None:
        out["conditional_accuracy"] = (preds == torch.as_tensor(labels).long()).float().mean().item()
        if torch.as_tensor(labels).long().bincount().max() >= 2:  # a spread needs two samples of a class
            out["diversity"] = diversity(feats, labels)  # within-class spread, with real digits' beside it
            out["diversity_real"] = sum(diversity(train_feats[idx], y_train[idx]) for idx in draws) / floor_draws
    out.update(distance)
    return out
