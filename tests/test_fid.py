"""FID for image folders: the distance behaves as a distance, the random-feature fallback is the same on
every run, and a failed Inception download falls back (auto) or says what to do (inception)."""

import pytest
import torch

from ddpm_lessons import fid
from ddpm_lessons.fid import RandomFeatures, feature_extractor, frechet_distance_images, image_features


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
    assert near["ratio"] < 2  # the same distribution: about the floor
    assert near["fd"] < far["fd"] < farther["fd"]
    assert far["floor"] == near["floor"]  # the floor depends only on the real images and the seed


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="twice as many real images"):
        frechet_distance_images(_images(10, 0), _images(15, 1), kind="random")
    with pytest.raises(ValueError, match="differ in shape"):
        frechet_distance_images(_images(10, 0), torch.zeros(30, 1, 16, 16), kind="random")
    with pytest.raises(ValueError, match="choose one of auto, inception, random"):
        feature_extractor("clip")


def test_a_failed_inception_download_falls_back_or_explains(monkeypatch, capsys):
    def no_network(weights="DEFAULT"):
        raise OSError("no route to host")

    monkeypatch.delenv("DDPM_OFFLINE", raising=False)
    monkeypatch.setattr(fid, "_inception", no_network)
    _, used = feature_extractor("auto")
    assert used == "random" and "Inception weights unavailable" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="Use kind='random' offline"):
        feature_extractor("inception")


def test_the_inception_path_gives_2048_features_for_grey_and_colour_images():
    """With random weights (no download): the resizing, channel repeat and normalisation run, shapes are right."""
    model = fid._inception(weights=None)
    assert image_features(torch.zeros(2, 1, 28, 28), model, "inception").shape == (2, 2048)
    assert image_features(torch.zeros(2, 3, 32, 32), model, "inception").shape == (2, 2048)
