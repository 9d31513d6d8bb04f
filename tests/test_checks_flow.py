"""Lesson 11's checks pass answers written here independently of ``ddpm_lessons.flow`` and catch the known-wrong
ones with the right hint. (The dtype, device and in-place variants of both come from ``RIGHT_ANSWERS`` in
tests/test_checks.py.)"""

import pytest

from ddpm_lessons import checks
from ddpm_lessons.checks import CheckFailed


def _passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("PASS ") and out.count("\n") == 1


def flow_loss(model, x0, s, eps, y, *, path="right", target="right", time="scaled", reduce="mean", labels=True):
    sv = s.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    x_s = {"right": (1 - sv) * x0 + sv * eps, "swapped": sv * x0 + (1 - sv) * eps}[path]
    t = {"scaled": 1000 * s, "raw": s}[time]
    v = model(x_s, t, y) if labels else model(x_s, t)
    goal = {"right": eps - x0, "sign": x0 - eps, "eps": eps}[target]
    err = (goal - v) ** 2
    return err.mean() if reduce == "mean" else err.sum()


def test_flow_matching_loss(capsys):
    _passes(checks.check_flow_matching_loss, flow_loss, capsys)
    wrong = {
        "target x0 - eps": (dict(target="sign"), "The sign of the target.*eps - x0, not x0 - eps"),
        "the ends swapped": (dict(path="swapped"), "ends of the path are swapped"),
        "s for 1000 s": (dict(time="raw"), "The model got s itself.*FLOW_TIME_SCALE \\* s"),
        "a sum": (dict(reduce="sum"), "mean of the squared error.*not the sum"),
        "the DDPM's target": (dict(target="eps"), "not the noise eps"),
        "no labels": (dict(labels=False), "all three inputs"),
    }
    for name, (how, hint) in wrong.items():
        with pytest.raises(CheckFailed, match=hint):
            checks.check_flow_matching_loss(lambda *a, how=how: flow_loss(*a, **how))
        assert name


def test_flow_matching_loss_catches_what_breaks_training():
    with pytest.raises(CheckFailed, match="no gradient"):
        checks.check_flow_matching_loss(lambda *a: flow_loss(*a).detach())
    with pytest.raises(CheckFailed, match="got float.*loss.item\\(\\)"):
        checks.check_flow_matching_loss(lambda *a: flow_loss(*a).item())  # a float, not a tensor
    with pytest.raises(CheckFailed, match="once on the whole batch"):
        checks.check_flow_matching_loss(
            lambda m, x0, s, eps, y: (
                sum(flow_loss(m, x0[i : i + 1], s[i : i + 1], eps[i : i + 1], y[i : i + 1]) for i in range(len(s)))
                / len(s)
            )  # fmt: skip
        )
    with pytest.raises(CheckFailed, match="one number"):
        checks.check_flow_matching_loss(lambda m, x0, s, eps, y: flow_loss(m, x0, s, eps, y).reshape(1).repeat(2))
    with pytest.raises(CheckFailed, match="shapes do not fit together.*view\\(-1, 1, 1, 1\\)"):
        checks.check_flow_matching_loss(lambda m, x0, s, eps, y: m((1 - s) * x0 + s * eps, 1000 * s, y).mean())


def test_flow_matching_loss_says_the_right_thing_about_shuffled_labels():
    with pytest.raises(CheckFailed, match="labels y to the model unchanged"):
        checks.check_flow_matching_loss(lambda m, x0, s, eps, y: flow_loss(m, x0, s, eps, y.flip(0)))


def euler(x, v, s, s_next, *, how="right"):
    return {
        "right": x + (s_next - s) * v,
        "sign": x - (s_next - s) * v,
        "s": x - s * v,
        "plus s": x + s * v,
        "s_next": x + s_next * v,
    }[how]


def test_euler_step(capsys):
    _passes(checks.check_euler_step, euler, capsys)
    _passes(checks.check_euler_step, lambda x, v, s, s_next: x - (s - s_next) * v, capsys)
    wrong = {"sign": "The sign", "s": "not with s itself", "plus s": "not with s itself", "s_next": "not with s_next"}
    for how, hint in wrong.items():
        with pytest.raises(CheckFailed, match=hint):
            checks.check_euler_step(lambda *a, how=how: euler(*a, how=how))
    with pytest.raises(CheckFailed, match="forget `return`"):
        checks.check_euler_step(lambda x, v, s, s_next: None)
    with pytest.raises(CheckFailed, match="not yet"):
        checks.check_euler_step(lambda x, v, s, s_next: x + 0.5 * (s_next - s) * v)
