"""The measuring stick: Frechet distance by two routes and a closed form, the shipped classifier."""

import json

import pytest
import torch

from ddpm_lessons.data import load_mnist, to_uint8
from ddpm_lessons.metrics import (
    CLASSIFIER_PATH,
    classify,
    conditional_accuracy,
    diversity,
    evaluate_samples,
    floor_indices,
    frechet_distance,
    load_classifier,
)


def test_frechet_distance_diagonal_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]) + 1.0
    b = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0])
    # |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2 for diagonal covariances
    expected = 3 * 1.0**2 + (1 - 3) ** 2 + (2 - 2) ** 2 + (0.5 - 1) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.01)


def test_frechet_distance_matches_a_second_route():
    """tr((S_a S_b)^(1/2)) from the eigenvalues of the non-symmetric product S_a S_b."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = (
        torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
        + 0.3
    )
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    cross = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    expected = (a.mean(0) - b.mean(0)).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected.item(), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)


def test_frechet_distance_with_fewer_points_than_features_matches_the_d_by_d_routes():
    """40 and 30 points in 100 dimensions take the singular-value route; both D x D routes by hand agree."""
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(100, 100, generator=g, dtype=torch.float64)
    a = torch.randn(40, 100, generator=g, dtype=torch.float64) @ mix
    b = torch.randn(30, 100, generator=g, dtype=torch.float64) @ mix + 0.3
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    rest = (a.mean(0) - b.mean(0)).pow(2).sum() + cov_a.trace() + cov_b.trace()
    symmetric = rest - 2 * torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    product = rest - 2 * torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    assert frechet_distance(a, b) == pytest.approx(symmetric.item(), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(product.item(), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_shipped_classifier_matches_its_record():
    record = json.loads(CLASSIFIER_PATH.with_suffix(".json").read_text())
    x, y = load_mnist("test", source="bundled")
    acc = conditional_accuracy(x, y, load_classifier())
    assert acc == pytest.approx(record["test_accuracy"], abs=0.002)  # fp16 storage may flip a digit
    assert acc > 0.97
    assert CLASSIFIER_PATH.stat().st_size < 1_000_000


def test_evaluate_real_digits_sits_at_the_floor_and_noise_far_above():
    x, y = load_mnist("train", source="bundled")
    real = evaluate_samples(to_uint8(x[-500:, 0]), y[-500:], seed=1)
    assert real["n"] == 500 and real["conditional_accuracy"] > 0.97
    assert 0.5 < real["frechet_ratio"] < 2.0
    assert 0.8 < real["diversity"] / real["diversity_real"] < 1.25  # two sets of real digits spread alike
    noise = evaluate_samples(torch.rand(500, 1, 28, 28) * 2 - 1)
    assert noise["frechet_ratio"] > 20 and "conditional_accuracy" not in noise
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        evaluate_samples(torch.zeros(4, 3, 28, 28))


def test_floor_is_the_mean_of_independent_draws_with_their_spread():
    """The floor is recomputed here draw by draw, from the classifier's features of the drawn digits."""
    x_train, _ = load_mnist("train", source="bundled")
    x_ref, _ = load_mnist("test", source="bundled")
    classifier = load_classifier().requires_grad_(False)
    ref = classifier.features(x_ref)
    images = torch.rand(300, 1, 28, 28) * 2 - 1
    out = evaluate_samples(images, classifier=classifier, seed=5, floor_draws=3)
    by_hand = []
    for k in range(3):
        idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(5 + k))[:300]
        by_hand.append(frechet_distance(classifier.features(x_train[idx]), ref))
    by_hand = torch.tensor(by_hand, dtype=torch.float64)
    assert out["floor_draws"] == 3 and len(set(by_hand.tolist())) == 3  # three different draws
    assert out["frechet_distance_real_vs_real"] == pytest.approx(by_hand.mean().item(), rel=1e-6)
    assert out["frechet_distance_real_vs_real_sd"] == pytest.approx(by_hand.std().item(), rel=1e-6)
    assert out["frechet_ratio"] == pytest.approx(out["frechet_distance"] / by_hand.mean().item(), rel=1e-6)
    one = evaluate_samples(images, classifier=classifier, seed=5, floor_draws=1)
    assert one["frechet_distance_real_vs_real"] == pytest.approx(by_hand[0].item(), rel=1e-6)
    assert one["frechet_distance_real_vs_real_sd"] == 0.0
    with pytest.raises(ValueError, match="floor_draws must be at least 1"):
        evaluate_samples(images, floor_draws=0)


def test_floor_draws_the_samples_class_mix():
    y_train = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    labels = torch.tensor([2, 0, 0, 1, 2, 2])
    draws = [floor_indices(y_train, 6, labels, torch.Generator().manual_seed(k)) for k in range(5)]
    for idx in draws:
        assert sorted(y_train[idx].tolist()) == [0, 0, 1, 2, 2, 2]  # the samples' mix, digit by digit
        assert len(set(idx.tolist())) == 6  # no training digit twice in one draw
    assert len({tuple(sorted(idx.tolist())) for idx in draws}) > 1  # the draws differ
    unlabelled = floor_indices(y_train, 6, None, torch.Generator().manual_seed(0))
    assert len(set(unlabelled.tolist())) == 6
    with pytest.raises(ValueError, match="digit 1.*holds 3"):
        floor_indices(y_train, 4, torch.tensor([1, 1, 1, 1]))


def test_labelled_floor_uses_class_matched_real_digits():
    """With labels, each draw of the floor is recomputed here from real digits of the samples' classes."""
    x_train, y_train = load_mnist("train", source="bundled")
    x_ref, _ = load_mnist("test", source="bundled")
    classifier = load_classifier().requires_grad_(False)
    ref = classifier.features(x_ref)
    labels = torch.tensor([3] * 150 + [7] * 150)  # a mix no random draw of real digits would have
    out = evaluate_samples(torch.rand(300, 1, 28, 28) * 2 - 1, labels, classifier=classifier, seed=2, floor_draws=2)
    by_hand = []
    for k in range(2):
        g = torch.Generator().manual_seed(2 + k)
        threes = (y_train == 3).nonzero().flatten()
        threes = threes[torch.randperm(len(threes), generator=g)[:150]]
        sevens = (y_train == 7).nonzero().flatten()
        sevens = sevens[torch.randperm(len(sevens), generator=g)[:150]]
        by_hand.append(frechet_distance(classifier.features(x_train[torch.cat([threes, sevens])]), ref))
    assert out["frechet_distance_real_vs_real"] == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_diversity_is_the_mean_within_class_distance():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0], [10.0, 10.0]])
    # class 0: one pair at distance 5; class 1: two identical samples (a collapse) at distance 0
    assert diversity(feats, torch.tensor([0, 0, 1, 1])) == pytest.approx(2.5)
    three = torch.tensor([[0.0], [1.0], [3.0]])  # pairs at 1, 3, 2 -> mean 2
    assert diversity(three) == pytest.approx(2.0)
    assert diversity(2 * three) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least two"):
        diversity(three, torch.tensor([0, 1, 2]))


def test_float_images_in_another_range_are_refused_not_scored():
    x, _ = load_mnist("test", source="bundled")
    pixels = to_uint8(x[:50, 0])
    for wrong in (torch.as_tensor(pixels).float(), torch.as_tensor(pixels).float() / 255):  # [0, 255] and [0, 1]
        with pytest.raises(ValueError, match="floats in \\[-1, 1\\]; these floats run from 0 to"):
            classify(wrong)
    assert torch.equal(classify(pixels)[0], classify(x[:50])[0])  # uint8 and [-1, 1] floats agree
