"""FID for image folders: the distance behaves as a distance, the random-feature fallback is the same on
every run, and a failed Inception download falls back (auto) or says what to do (inception)."""

import pytest
import torch

from ddpm_lessons import fid
from ddpm_lessons.fid import RandomFeatures, feature_extractor, frechet_distance_images, image_features
from ddpm_lessons.metrics import frechet_distance


def _images(n, seed, brightness=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g) * 0.5 - 0.25 + brightness
    x[:, 0, 4:12, 4:12] += 0.5  # a red square on every image
    return x.clamp(-1, 1)


def test_random_features_are_fixed_and_the_distance_grows_with_the_difference(monkeypatch):
    monkeypatch.setenv("DDPM_OFFLINE", "1")
    x = _images(8, 0)
    assert torch.equal(image_features(x, RandomFeatures(), "random"), image_features(x, RandomFeatures(), "random"))
    real = _images(400, 1)
    near = frechet_distance_images(_images(100, 2), real, kind="random")
    far = frechet_distance_images(_images(100, 2, brightness=0.3), real, kind="random")
    farther = frechet_distance_images(_images(100, 2, brightness=0.6), real, kind="random")
    assert near["features"] == "random" and near["n"] == 100
    assert near["frechet_ratio"] < 2  # the same distribution: about the floor
    assert near["frechet_distance"] < far["frechet_distance"] < farther["frechet_distance"]
    floor = "frechet_distance_real_vs_real"
    assert far[floor] == near[floor]  # the floor depends only on the real images and the seed


def test_distance_and_floor_are_means_over_draws_recomputed_by_hand(monkeypatch):
    monkeypatch.setenv("DDPM_OFFLINE", "1")
    samples, real = _images(20, 3, brightness=0.2), _images(70, 4)
    out = frechet_distance_images(samples, real, kind="random", seed=7, draws=3)
    features = RandomFeatures().eval()
    f_samples = image_features(samples, features, "random")
    fds, floors = [], []
    for k in range(3):
        order = torch.randperm(70, generator=torch.Generator().manual_seed(7 + k))
        ref = image_features(real[order[:20]], features, "random")
        fds.append(frechet_distance(f_samples, ref))
        floors.append(frechet_distance(image_features(real[order[20:40]], features, "random"), ref))
    fds, floors = torch.tensor(fds, dtype=torch.float64), torch.tensor(floors, dtype=torch.float64)
    assert out["floor_draws"] == 3 and len(set(floors.tolist())) == 3  # three different splits
    assert out["frechet_distance"] == pytest.approx(fds.mean().item(), rel=1e-6)
    assert out["frechet_distance_sd"] == pytest.approx(fds.std().item(), rel=1e-6)
    assert out["frechet_distance_real_vs_real"] == pytest.approx(floors.mean().item(), rel=1e-6)
    assert out["frechet_distance_real_vs_real_sd"] == pytest.approx(floors.std().item(), rel=1e-6)
    assert out["frechet_ratio"] == pytest.approx(fds.mean().item() / floors.mean().item(), rel=1e-6)
    one = frechet_distance_images(samples, real, kind="random", seed=7, draws=1)
    assert (
        one["frechet_distance_real_vs_real"] == pytest.approx(floors[0].item(), rel=1e-6)
        and one["frechet_distance_real_vs_real_sd"] == 0.0
    )


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="twice as many real images"):
        frechet_distance_images(_images(10, 0), _images(15, 1), kind="random")
    with pytest.raises(ValueError, match="differ in shape"):
        frechet_distance_images(_images(10, 0), torch.zeros(30, 1, 16, 16), kind="random")
    with pytest.raises(ValueError, match="draws must be at least 1"):
        frechet_distance_images(_images(10, 0), _images(30, 1), kind="random", draws=0)
    with pytest.raises(ValueError, match="choose one of auto, fid-inception, inception, random"):
        feature_extractor("clip")


def test_a_failed_inception_download_falls_back_or_explains(monkeypatch, capsys):
    def no_network(weights="DEFAULT"):
        raise OSError("no route to host")

    def not_installed():
        raise ImportError("No module named 'pytorch_fid'")

    monkeypatch.delenv("DDPM_OFFLINE", raising=False)
    monkeypatch.setattr(fid, "_inception", no_network)
    monkeypatch.setattr(fid, "_fid_inception", not_installed)
    _, used = feature_extractor("auto")
    out = capsys.readouterr().out
    assert used == "random" and "pytorch-fid is not installed; pip install pytorch-fid" in out
    assert "Inception weights unavailable" in out
    with pytest.raises(RuntimeError, match="pytorch-fid is not installed\\): pip install pytorch-fid"):
        feature_extractor("fid-inception")
    with pytest.raises(RuntimeError, match="Use kind='random' offline"):
        feature_extractor("inception")


def test_the_inception_path_gives_2048_features_for_grey_and_colour_images():
    """With random weights (no download): the resizing, channel repeat and normalisation run, shapes are right."""
    model = fid._inception(weights=None)
    assert image_features(torch.zeros(2, 1, 28, 28), model, "inception").shape == (2, 2048)
    assert image_features(torch.zeros(2, 3, 32, 32), model, "inception").shape == (2, 2048)


def test_the_fid_inception_path_hands_pytorch_fid_three_channels_in_0_1(monkeypatch):
    """pytorch-fid's network resizes and normalises itself; it must get 3 channels in [0, 1] (a stand-in here,
    since its weights download at first use)."""
    seen = []

    class StandIn(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return [x.mean((2, 3), keepdim=True).repeat(1, 683, 1, 1)[:, :2048]]

    monkeypatch.setattr(fid, "_fid_inception", lambda: fid._PooledFeatures(StandIn()))
    extractor, used = feature_extractor("fid-inception")
    feats = image_features(_images(4, 0)[:, :1], extractor, used)
    assert used == "fid-inception" and feats.shape == (4, 2048)
    assert seen[0].shape == (4, 3, 16, 16) and 0 <= seen[0].min() and seen[0].max() <= 1
