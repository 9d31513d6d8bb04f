"""Seeding, device choice and the FAST flag."""

import pytest
import torch

from ddpm_lessons.utils import fast_or_full, get_device, is_fast, is_offline, seed_everything


def test_seed_everything_repeats_global_and_returned_randomness():
    g1 = seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=g1))
    g2 = seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seed_everything(8)
    assert not torch.equal(torch.rand(3), a[0])


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("", False), ("no", False)])
def test_flags_read_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DDPM_FAST", value)
    monkeypatch.setenv("DDPM_OFFLINE", value)
    assert is_fast() is expected and is_offline() is expected
    assert fast_or_full("fast", "full") == ("fast" if expected else "full")


def test_get_device(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible; use 'cpu'"):
        get_device("cuda")
    assert get_device().type in ("cpu", "mps")
