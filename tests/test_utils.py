"""Seeding, device choice, the FAST/FULL profile and the time estimate."""

import re

import pytest
import torch

from ddpm_lessons import utils
from ddpm_lessons.utils import (
    TimeEstimate,
    fast_or_full,
    format_duration,
    get_device,
    is_fast,
    is_offline,
    profile_and_reason,
    seed_everything,
    show_profile,
    use_profile,
)


def test_seed_everything_repeats_global_and_returned_randomness():
    g1 = seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=g1))
    g2 = seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seed_everything(8)
    assert not torch.equal(torch.rand(3), a[0])


@pytest.fixture
def no_profile_variables(monkeypatch):
    for name in ("DDPM_PROFILE", "DDPM_FAST"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("cuda,expected", [(False, "fast"), (True, "full")])
def test_the_profile_follows_the_machine_when_nothing_is_chosen(no_profile_variables, cuda, expected):
    no_profile_variables.setattr(torch.cuda, "is_available", lambda: cuda)
    no_profile_variables.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    name, why = profile_and_reason()
    assert name == expected and ("no CUDA GPU" in why) != cuda and is_fast() == (not cuda)
    assert fast_or_full("fast", "full") == expected


@pytest.mark.parametrize(
    "profile,fast,cuda,expected",
    [
        ("", "1", True, "fast"),  # DDPM_FAST=1 keeps working, even on a GPU
        ("", "0", False, "full"),  # and DDPM_FAST=0 chooses FULL on a CPU
        ("full", "1", False, "full"),  # DDPM_PROFILE wins over DDPM_FAST
        ("FAST", "", True, "fast"),
        ("auto", "", False, "fast"),
        ("auto", "1", True, "full"),  # use_profile("auto") follows the machine even where DDPM_FAST is set
    ],
)
def test_a_choice_overrides_the_machine(no_profile_variables, profile, fast, cuda, expected):
    no_profile_variables.setattr(torch.cuda, "is_available", lambda: cuda)
    no_profile_variables.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    no_profile_variables.setenv("DDPM_PROFILE", profile)
    no_profile_variables.setenv("DDPM_FAST", fast)
    assert profile_and_reason()[0] == expected


def test_use_profile_switches_and_names_bad_choices(no_profile_variables, capsys):
    no_profile_variables.setattr(torch.cuda, "is_available", lambda: False)
    assert use_profile("full") == "full" and not is_fast()
    show_profile()
    out = capsys.readouterr().out
    assert out.startswith("profile FULL") and "DDPM_PROFILE=full" in out and "use_profile('fast')" in out
    assert use_profile("auto") == "fast"
    with pytest.raises(ValueError, match="unknown profile 'quick'; use one of fast, full, auto"):
        use_profile("quick")
    no_profile_variables.setenv("DDPM_PROFILE", "gpu")
    with pytest.raises(ValueError, match="DDPM_PROFILE: unknown profile 'gpu'"):
        is_fast()


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("", False), ("no", False)])
def test_offline_flag_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DDPM_OFFLINE", value)
    assert is_offline() is expected


def test_time_estimate_projects_from_measured_units(monkeypatch, capsys):
    clock_values = iter([0.0, 10.0, 12.0, 20.0, 22.0] + [99.0] * 10)  # start-up, 2 s, one slowed to 8 s, 2 s
    monkeypatch.setattr(utils.time, "perf_counter", lambda: next(clock_values))
    estimate = TimeEstimate("training", total=100, unit="step", probe=4)
    for _ in range(5):
        estimate.tick()
    out = capsys.readouterr().out
    assert estimate.projected_s == pytest.approx(200.0)  # median 2 s per step (the first left out) x 100
    assert re.fullmatch(
        r"training: about 3 min on this device for 100 steps \(2 s per step, measured over the first 4\)\n", out
    )


def test_time_estimate_is_silent_for_short_jobs(capsys):
    estimate = TimeEstimate("sampling", total=5)
    for _ in range(5):
        estimate.tick()
    assert capsys.readouterr().out == "" and estimate.projected_s < 60


def test_say_how_long_multiplies_a_measured_call(capsys):
    calls = []
    seconds = utils.time_call(lambda x: calls.append(x.sum()), torch.ones(3), repeats=3)
    assert len(calls) == 4 and 0 <= seconds < 1  # one warm-up call, then three timed ones
    assert utils.say_how_long("the table", 0.5, 100) == 50.0 and capsys.readouterr().out == ""  # under a minute
    assert utils.say_how_long("the table", 0.5, 1000) == 500.0
    out = capsys.readouterr().out
    assert (
        out == "the table: about 8 min on this device for 1000 network calls (0.5 s per network call, measured here)\n"
    )


def test_format_duration():
    assert [format_duration(s) for s in (5, 89, 600, 5400, 7200)] == ["5 s", "89 s", "10 min", "1.5 h", "2.0 h"]


def test_get_device(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible; use 'cpu'"):
        get_device("cuda")
    assert get_device().type in ("cpu", "mps")


def test_progress_writes_plain_lines_where_the_output_is_not_a_terminal(capsys):
    assert isinstance(utils.progress(range(3), desc="x"), utils.PlainProgress)  # capsys: stderr is no terminal
    assert list(utils.progress(range(20), desc="walk")) == list(range(20))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 10 and lines[0].startswith("walk: 2/20 (10%), ")
    assert lines[-1].startswith("walk: 20/20 (100%)") and "left" not in lines[-1] and "left" in lines[0]
    assert list(utils.progress(range(5), desc="inner", transient=True)) == list(range(5))  # transient: silent
    bar = utils.progress(total=4, desc="train", initial=2)
    bar.update(1)
    bar.set_postfix(loss="0.1")
    bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("train: 3/4 (75%)") and lines[1].endswith("loss=0.1")
