"""Training: it learns, resumes exactly, survives SIGKILL and SIGTERM, stops on NaN, names config mismatches."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddpm_lessons.checkpoints import ConfigMismatch, ScheduleConfig, load_model, load_training_checkpoint
from ddpm_lessons.data import load_mnist
from ddpm_lessons.training import EMA, TrainConfig, Trainer, TrainingDiverged
from ddpm_lessons.unet import UNetConfig

TINY = UNetConfig(base_channels=8, groups=4, channel_mults=(1, 2), attention_resolutions=(14,), num_classes=10)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist("train", source="bundled")
    return x[:512], y[:512]


def _config(**kw):
    base = dict(steps=8, batch_size=16, lr=2e-3, warmup_steps=2, checkpoint_every=4, log_every=2, ema_decay=0.99)
    return TrainConfig(**{**base, **kw})


def _weights(trainer):
    return {**trainer.model.state_dict(), **{"ema." + k: v for k, v in trainer.ema.model.state_dict().items()}}


def test_n_steps_plus_resume_plus_n_equals_2n_straight(digits, tmp_path):
    x, y = digits
    straight = Trainer(TINY, _config(steps=8), x, tmp_path / "a", labels=y, progress=False).train()
    Trainer(TINY, _config(steps=4), x, tmp_path / "b", labels=y, progress=False).train()
    resumed = Trainer(TINY, _config(steps=8), x, tmp_path / "b", labels=y, resume=True, progress=False)
    assert resumed.step == 4
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in resumed.read_log()] == [2, 4, 6, 8]


def test_a_shift_of_the_sampling_grid_needs_a_flow_model(digits, tmp_path):
    from ddpm_lessons.solvers import SamplingConfig

    x, y = digits
    with pytest.raises(ValueError, match="objective 'eps' has none: leave the shift at 1"):
        Trainer(
            TINY, _config(), x, tmp_path / "eps", labels=y, progress=False, sampling=SamplingConfig("ddim", 5, 0, 2)
        )
    assert not (tmp_path / "eps").exists()  # refused before anything is written
    flow = Trainer(TINY, _config(objective="flow"), x, tmp_path / "flow", labels=y, progress=False,
                   sampling=SamplingConfig("heun", 5, 0.0, 2.0))  # fmt: skip
    assert flow.sampling.shift == 2.0


def test_training_lowers_the_loss(digits, tmp_path):
    x, y = digits
    trainer = Trainer(TINY, _config(steps=60, log_every=10, checkpoint_every=60), x, tmp_path, labels=y, progress=False)
    losses = [r["loss"] for r in trainer.train().read_log()]
    assert losses[0] > 0.5 and losses[-1] < 0.6 * losses[0]  # starts near E|eps|^2 = 1 (zero output)


@pytest.mark.parametrize("warmup", [1, 5])
def test_cosine_lr_decay_matches_torchs_cosine_annealing(digits, tmp_path, warmup):
    """lr_decay="cosine" against torch.optim.lr_scheduler.CosineAnnealingLR (T_max = steps, down to 0),
    times the linear warm-up; the steps actually taken use those rates."""
    x, y = digits
    trainer = Trainer(TINY, _config(steps=20, warmup_steps=warmup, lr_decay="cosine"), x, tmp_path, labels=y,
                      progress=False)  # fmt: skip
    reference_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_opt, T_max=20, eta_min=0.0)
    for step in range(20):
        expected = reference.get_last_lr()[0] * min(1.0, (step + 1) / warmup)
        trainer.train_step()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        reference_opt.step()
        reference.step()
    assert trainer.lr_at(20) == pytest.approx(0.0, abs=1e-15)
    assert trainer.lr_at(0, progress=0.5) == pytest.approx(2e-3 * 0.5 * min(1.0, 1 / warmup))  # a share of time
    assert Trainer(TINY, _config(), x, tmp_path / "flat", labels=y, progress=False).lr_at(7) == 2e-3  # "none"
    with pytest.raises(ValueError, match="lr_decay must be one of \\('none', 'cosine'\\), got 'linear'"):
        Trainer(TINY, _config(lr_decay="linear"), x, tmp_path / "bad", labels=y, progress=False)


def test_checkpoint_record_and_export(digits, tmp_path):
    x, y = digits
    Trainer(TINY, _config(steps=4), x, tmp_path, labels=y, progress=False).train()
    record = json.loads((tmp_path / "checkpoint.json").read_text())
    assert record["step"] == 4 and record["model"]["num_classes"] == 10 and record["schedule"]["T"] == 1000
    assert "ddpm_lessons_version" in record
    model, schedule, rec = load_model(tmp_path / "model.safetensors")
    assert model.config == TINY and schedule.T == 1000 and rec["step"] == 4
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic writes leave nothing behind
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.pt", "model.safetensors", "model.json"):  # not the 0600 of temporary files
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_resume_into_a_different_config_names_the_fields(digits, tmp_path):
    x, y = digits
    Trainer(TINY, _config(steps=4), x, tmp_path, labels=y, progress=False).train()
    other = UNetConfig(base_channels=16, groups=4, channel_mults=(1, 2), attention_resolutions=(14,), num_classes=10)
    with pytest.raises(ConfigMismatch, match=r"model.base_channels: checkpoint has 8, this run has 16"):
        Trainer(other, _config(), x, tmp_path, labels=y, resume=True, progress=False)
    with pytest.raises(ConfigMismatch, match=r"schedule.kind: checkpoint has 'linear', this run has 'cosine'"):
        Trainer(TINY, _config(), x, tmp_path, labels=y, resume=True, schedule_config=ScheduleConfig(kind="cosine"))
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(TINY, _config(), x, tmp_path, labels=y, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path, monkeypatch):
    x, y = digits
    trainer = Trainer(TINY, _config(steps=20), x, tmp_path, labels=y, progress=False)
    real_loss = trainer._loss
    monkeypatch.setattr(trainer, "_loss", lambda *a: real_loss(*a) * (float("nan") if trainer.step >= 6 else 1.0))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 6; the last good checkpoint \(step 4\)"):
        trainer.train()
    state, record = load_training_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_bad_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must lie in \\[-1, 1\\]"):
        Trainer(TINY, _config(), torch.full((4, 1, 28, 28), 255.0), tmp_path, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="model expects \\(1, 28, 28\\)"):
        Trainer(TINY, _config(), torch.zeros(4, 3, 32, 32), tmp_path, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="no labels"):
        Trainer(TINY, _config(), torch.zeros(4, 1, 28, 28), tmp_path)


def _cli_train(out, steps, *extra):
    cmd = [sys.executable, "-m", "ddpm_lessons", "train", "--source", "bundled", "--conditional", "--steps", str(steps),
           "--batch-size", "8", "--base-channels", "8", "--channel-mults", "1", "2", "--attention", "14",
           "--checkpoint-every", "3", "--warmup", "2", "--no-progress", "--out", str(out), *extra]  # fmt: skip
    env = {**os.environ, "DDPM_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(out, at_least, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = out / "checkpoint.json"
        if record.exists() and json.loads(record.read_text())["step"] >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early:\n{proc.stdout.read()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared in time")


@pytest.mark.slow
def test_sigkill_mid_run_resumes_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _cli_train(out, 10_000, "--lr-decay", "cosine")
    _wait_for_step(out, 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state, record = load_training_checkpoint(out / "checkpoint.pt")  # still readable after the kill
    assert record["train"]["lr_decay"] == "cosine"
    killed_at = int(state["step"])
    assert killed_at >= 6 and killed_at % 3 == 0
    resumed = _cli_train(out, killed_at + 3, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stdout.read()
    assert json.loads((out / "checkpoint.json").read_text())["step"] == killed_at + 3


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_before_exiting(tmp_path):
    out = tmp_path / "run"
    proc = _cli_train(out, 10_000, "--checkpoint-every", "1000")
    deadline = time.time() + 120
    while not (out / "log.jsonl").exists() and time.time() < deadline:  # the loop is running
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert "SIGTERM: checkpoint at step" in proc.stdout.read()
    state, _ = load_training_checkpoint(out / "checkpoint.pt")
    assert state["step"] >= 50  # log_every is 50: the run got that far before the signal


def test_sample_grids_and_gradient_accumulation(digits, tmp_path):
    x, y = digits
    config = _config(steps=4, grad_accum=2, sample_every=2, sample_steps=3, log_every=4)
    trainer = Trainer(TINY, config, x, tmp_path, labels=y, progress=False).train()
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]
    from PIL import Image

    with Image.open(tmp_path / "samples" / grids[0]) as im:
        assert im.size == (10 * 29 + 1, 2 * 29 + 1)  # 20 samples, one row per 10 classes, 1 px padding
    assert trainer.read_log()[-1]["step"] == 4


def test_a_record_from_before_a_config_field_existed_still_resumes(digits, tmp_path):
    """Runs started before UNetConfig gained text_conditioning have no such key; it means the default."""
    from ddpm_lessons.checkpoints import check_same_config

    x, y = digits
    Trainer(TINY, _config(steps=2), x, tmp_path, labels=y, progress=False).train()
    record = json.loads((tmp_path / "checkpoint.json").read_text())
    del record["model"]["text_conditioning"]
    check_same_config(record, TINY, ScheduleConfig(), "old run")  # no ConfigMismatch
    with pytest.raises(ConfigMismatch, match="text_conditioning: checkpoint has False, this run has True"):
        check_same_config(record, UNetConfig(**{**TINY.to_dict(), "num_classes": None, "text_conditioning": True}),
                          ScheduleConfig(), "old run")  # fmt: skip


def test_stop_on_signal_turns_ctrl_c_into_a_flag_and_restores_the_handler():
    import os
    import signal

    from ddpm_lessons.runs import StopOnSignal

    before = signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the loop finishes its step
        assert stop.name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before


def test_run_log_keeps_only_the_steps_up_to_a_resumed_checkpoint(tmp_path):
    from ddpm_lessons.runs import RunLog

    log = RunLog(tmp_path / "log.jsonl")
    for step in (50, 100, 150):
        log.append({"step": step, "loss": 1.0 / step})
    log.truncate_after(100)
    assert [r["step"] for r in log.read()] == [50, 100] and RunLog(tmp_path / "none.jsonl").read() == []


@pytest.mark.parametrize("objective", ["eps", "x0", "v", "flow"])
def test_each_objective_regresses_its_own_target(digits, tmp_path, objective):
    """One batch's loss recomputed by hand from the trainer's own draws: t (or s), eps, x_t (or x_s) and the
    target written out here, not through the package's conversions (Ho et al. Eq. 14; Salimans & Ho 2022 for v;
    Lipman et al. 2023 Eq. 23 for the flow)."""
    x, y = digits
    net = UNetConfig(**{**TINY.to_dict(), "dropout": 0.0})
    trainer = Trainer(net, _config(objective=objective, label_dropout=0.0), x, tmp_path, labels=y, progress=False)
    x0, labels = x[:16], y[:16]
    g = torch.Generator().manual_seed(trainer.noise_gen.initial_seed())
    loss = trainer._loss(x0, labels)
    if objective == "flow":
        s = torch.rand(16, generator=g)
        eps = torch.randn(x0.shape, generator=g)
        inputs, t_in = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * eps, 1000 * s
        target = eps - x0
    else:
        t = torch.randint(0, 1000, (16,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        ab = trainer.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        inputs, t_in = ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t
        target = {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[objective]
    with torch.no_grad():
        want = ((target - trainer.model(inputs, t_in, labels)) ** 2).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_a_wall_clock_budget_ends_the_run_with_a_checkpoint_and_carries_over_a_resume(digits, tmp_path):
    x, y = digits
    config = _config(steps=10**9, minutes=0.03, lr_decay="cosine", checkpoint_every=10**6, log_every=5)
    trainer = Trainer(TINY, config, x, tmp_path, labels=y, progress=False).train()
    assert trainer.interrupted is None and 1.8 <= trainer.seconds < 30
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["step"] == trainer.step and record["train_seconds"] == pytest.approx(trainer.seconds, abs=0.1)
    assert record["train"]["minutes"] == 0.03
    lrs = [line["lr"] for line in trainer.read_log()]
    assert lrs[-1] < 0.2 * config.lr  # the cosine follows the minutes: near 0 at the end of the budget
    # a resume keeps the clock: with the budget spent, nothing more happens; a larger budget trains on from it
    again = Trainer(TINY, config, x, tmp_path, labels=y, resume=True, progress=False)
    assert again.seconds == pytest.approx(trainer.seconds, abs=0.1) and again._done()
    more = Trainer(TINY, _config(steps=10**9, minutes=0.06, lr_decay="cosine", checkpoint_every=10**6, log_every=5),
                   x, tmp_path, labels=y, resume=True, progress=False).train()  # fmt: skip
    assert more.step > trainer.step and 3.6 <= more.seconds < 60


def test_resuming_with_another_objective_is_refused(digits, tmp_path):
    x, y = digits
    Trainer(TINY, _config(steps=2, checkpoint_every=2), x, tmp_path, labels=y, progress=False).train()
    with pytest.raises(ValueError, match="trained with objective 'eps', not 'flow'"):
        Trainer(TINY, _config(steps=4, objective="flow"), x, tmp_path, labels=y, resume=True, progress=False)
    with pytest.raises(ValueError, match="objective must be one of eps, x0, v, flow"):
        Trainer(TINY, _config(objective="score"), x, tmp_path / "new", labels=y, progress=False)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_min_snr_weighting_weights_the_x0_error_by_min_snr_gamma(digits, tmp_path, objective):
    """Hang et al. 2023: whatever the network predicts, the min-SNR loss is mean_i min(SNR_i, gamma) |x0_i - x0_hat_i|^2,
    with x0_hat recovered from the prediction by hand (Eq. 15 for eps; x0 = a x_t - b v for v)."""
    x, y = digits
    net = UNetConfig(**{**TINY.to_dict(), "dropout": 0.0})
    config = _config(objective=objective, label_dropout=0.0, loss_weighting="min-snr")
    trainer = Trainer(net, config, x, tmp_path, labels=y, progress=False)
    x0, labels = x[:16], y[:16]
    g = torch.Generator().manual_seed(trainer.noise_gen.initial_seed())
    t = torch.randint(0, 1000, (16,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = trainer.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
    snr = (ab / (1 - ab)).view(-1)
    trainer.config.min_snr_gamma = snr.median().item()  # half the batch clipped, half not
    loss = trainer._loss(x0, labels)
    a, b = ab.sqrt(), (1 - ab).sqrt()
    xt = a * x0 + b * eps
    with torch.no_grad():
        pred = trainer.model(xt, t, labels)
    x0_hat = {"eps": (xt - b * pred) / a, "x0": pred, "v": a * xt - b * pred}[objective]
    want = (snr.clamp(max=trainer.config.min_snr_gamma) * ((x0 - x0_hat) ** 2).flatten(1).mean(1)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)


def test_min_snr_is_refused_for_the_flow_objective_and_unknown_weightings(digits, tmp_path):
    x, y = digits
    with pytest.raises(ValueError, match="min-snr' is defined for the eps, x0 and v objectives"):
        Trainer(TINY, _config(objective="flow", loss_weighting="min-snr"), x, tmp_path, labels=y, progress=False)
    with pytest.raises(ValueError, match="loss_weighting must be one of none, min-snr"):
        Trainer(TINY, _config(loss_weighting="snr"), x, tmp_path, labels=y, progress=False)


def test_cpu_bf16_runs_the_forward_pass_in_bfloat16_and_follows_float32(digits, tmp_path):
    x, y = digits
    net = UNetConfig(**{**TINY.to_dict(), "dropout": 0.0})
    runs = {}
    for bf16 in (False, True):
        trainer = Trainer(net, _config(cpu_bf16=bf16, lr=2e-3, warmup_steps=1), x, tmp_path / str(bf16), labels=y,
                          progress=False)  # fmt: skip
        assert trainer.amp_dtype == (torch.bfloat16 if bf16 else None)
        runs[bf16] = [trainer.train_step() for _ in range(5)]
    assert runs[True] != runs[False]  # bfloat16 arithmetic really ran
    assert runs[True] == pytest.approx(runs[False], rel=0.02)  # and tracks float32 to about bf16's precision


@pytest.mark.parametrize("loc", [0.0, 0.7])
def test_logit_normal_flow_times_enter_the_loss_as_sigmoid_of_a_normal(digits, tmp_path, loc):
    """Esser et al. 2024, Sec. 3.1: s = sigmoid(u), u ~ N(loc, 1); the loss recomputed by hand from the same draws."""
    x, y = digits
    net = UNetConfig(**{**TINY.to_dict(), "dropout": 0.0})
    config = _config(objective="flow", flow_time="logit-normal", flow_time_loc=loc, label_dropout=0.0)
    trainer = Trainer(net, config, x, tmp_path, labels=y, progress=False)
    torch.nn.init.normal_(trainer.model.conv_out.weight, std=0.1)  # zero-initialised, v would not depend on s at all
    x0, labels = x[:16], y[:16]
    g = torch.Generator().manual_seed(trainer.noise_gen.initial_seed())
    loss = trainer._loss(x0, labels)
    s = torch.sigmoid(loc + torch.randn(16, generator=g)).view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        v = trainer.model((1 - s) * x0 + s * eps, 1000 * s.view(-1), labels)
    assert loss.item() == pytest.approx(((eps - x0 - v) ** 2).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown flow time sampling .beta.; choose one of uniform, logit-normal"):
        Trainer(net, _config(objective="flow", flow_time="beta"), x, tmp_path / "bad", labels=y, progress=False)


@pytest.mark.parametrize("decay, warmup", [(0.999, 10.0), (0.8, 10.0), (0.9999, 3.0)])  # 0.8: capped from step 36
def test_ema_is_the_weighted_sum_its_warmed_up_decays_imply(decay, warmup):
    """After updates at steps 0..n-1 with weights w_0..w_{n-1}, the EMA is d_0...d_{n-1} w_init plus, for each j,
    (1 - d_j) d_{j+1}...d_{n-1} w_j, with d_j = min(decay, (1 + j) / (warmup + j)): computed here in float64."""
    net = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)
    ema = EMA(net, decay, warmup)
    values = torch.linspace(-1.0, 2.0, 40, dtype=torch.float64) ** 2  # the weights at each step: one per update
    for step, value in enumerate(values):
        with torch.no_grad():
            net.weight.fill_(float(value))
        ema.update(net, step)
    d = torch.tensor([min(decay, (1 + j) / (warmup + j)) for j in range(len(values))], dtype=torch.float64)
    later = torch.cat([torch.flip(torch.cumprod(torch.flip(d, [0]), 0), [0])[1:], torch.ones(1, dtype=torch.float64)])
    expected = ((1 - d) * later * values).sum()  # the initial weight is 0, so its share drops out
    torch.testing.assert_close(ema.model.weight.double(), torch.full((1, 3), expected.item(), dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_ema_warmup_average_has_mean_age_step_over_warmup():
    """The documented mean age of the warm-up's average, s / K (a tenth of the steps at K = 10), read off training.EMA
    itself: with the weight at step j equal to j (and 0 before the first update), the EMA after step s holds the mean
    step of its shares, so s minus the EMA is their mean age (the first weights' share, (1/K)...(s + 1)/(K + s), is
    below 1e-6 here)."""
    s = 4000
    for k in (3.0, 10.0, 20.0):
        net = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
        torch.nn.init.zeros_(net.weight)
        ema = EMA(net, 0.99999, warmup=k)  # below step (K d - 1) / (1 - d) the warm-up alone sets the decay
        for step in range(s + 1):
            with torch.no_grad():
                net.weight.fill_(float(step))
            ema.update(net, step)
        age = s - ema.model.weight.item()
        assert abs(age / s - 1 / k) < 0.01, (k, age / s)


def test_ema_refuses_a_warmup_that_never_leaves_the_first_weights():
    with pytest.raises(ValueError, match="warmup=1 must be above 1"):
        EMA(torch.nn.Linear(2, 1), 0.999, warmup=1)


def test_ema_refuses_a_model_of_another_shape():
    ema = EMA(torch.nn.Linear(2, 1), 0.999)
    with pytest.raises(ValueError, match="the model has 4 parameter tensors, its average 2"):
        ema.update(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)), step=0)


@pytest.mark.parametrize("b2", [0.999, 0.99])
def test_adamw_matches_the_update_written_out(b2):
    """training.adamw (fused where available) against AdamW written out (Loshchilov & Hutter 2019, Alg. 2 with
    Adam's bias corrections): five steps on fixed gradients, weight decay applied to the weights directly."""
    from ddpm_lessons.training import adamw

    torch.manual_seed(0)
    w = torch.randn(7, 3, requires_grad=True)
    grads = [torch.randn(7, 3) for _ in range(5)]
    lr, wd, b1, eps = 1e-2, 0.1, 0.9, 1e-8
    opt = adamw([w], lr=lr, weight_decay=wd, beta2=b2)
    ref, m, v = (
        w.detach().clone().double(),
        torch.zeros(7, 3, dtype=torch.float64),
        torch.zeros(7, 3, dtype=torch.float64),
    )
    for k, g in enumerate(grads, start=1):
        w.grad = g.clone()
        opt.step()
        g = g.double()
        ref = ref * (1 - lr * wd)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        ref = ref - lr * (m / (1 - b1**k)) / ((v / (1 - b2**k)).sqrt() + eps)
    torch.testing.assert_close(w.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_adamw_falls_back_where_the_fused_kernel_is_missing(monkeypatch):
    from ddpm_lessons import training

    real = torch.optim.AdamW

    def without_fused(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", without_fused)
    opt = training.adamw(torch.nn.Linear(2, 1).parameters(), lr=1e-3, weight_decay=0.0)
    assert not opt.defaults["fused"] and len(opt.param_groups[0]["params"]) == 2  # the parameters survive the retry
    monkeypatch.setattr(torch.optim, "AdamW", real)

    # a device without a fused kernel (as a CPU before torch 2.4) gets the default one, not a failure at step 1
    import torch.utils._foreach_utils as foreach_utils

    monkeypatch.setattr(foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    opt = training.adamw(torch.nn.Linear(2, 1).parameters(), lr=1e-3, weight_decay=0.0)
    assert not opt.defaults["fused"]


def test_mixed_precision_is_float16_on_a_gpu_that_only_emulates_bfloat16(monkeypatch):
    """A T4 (compute capability 7.5) reports bfloat16 as supported through emulation, where its convolutions are
    slow: the trainer takes float16 with a gradient scaler there, bfloat16 from capability 8.0 on."""
    from ddpm_lessons.training import cuda_native_bf16

    monkeypatch.setattr(torch.version, "hip", None)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert cuda_native_bf16(torch.device("cuda")) is native
    monkeypatch.setattr(torch.version, "hip", "6.0")
    assert cuda_native_bf16(torch.device("cuda"))


def test_a_run_saved_with_the_unfused_adamw_resumes_with_the_fused_one(tmp_path, monkeypatch):
    """A checkpoint written before AdamW became fused (or on a device without the kernel) resumes with the
    optimizer this machine builds, and a gradient scaler saved while off leaves an enabled one as it was."""
    from ddpm_lessons import runs, training

    config = UNetConfig(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)
    train = TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup_steps=1, checkpoint_every=2, log_every=2)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    real = training.adamw
    monkeypatch.setattr(training, "adamw", lambda params, lr, weight_decay, beta2: torch.optim.AdamW(params, lr=lr))
    first = Trainer(config, dataclasses.replace(train, steps=2), x, tmp_path, progress=False).train()
    assert not first.optimizer.defaults["fused"]
    monkeypatch.setattr(training, "adamw", real)
    resumed = Trainer(config, train, x, tmp_path, resume=True, progress=False)
    fused = resumed.optimizer.defaults["fused"]
    assert resumed.step == 2 and resumed.optimizer.param_groups[0]["fused"] == fused
    resumed.train()
    assert resumed.step == 4

    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["scaler"] == {}  # off on a CPU
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, enabled=True)
    optimizer = training.adamw(resumed.model.parameters(), lr=1e-3, weight_decay=0.0)
    runs.restore_state(
        state, resumed.model, resumed.ema.model, optimizer, scaler, resumed._generators(), resumed.device
    )
    assert scaler.get_scale() == 8.0


def test_a_resumed_run_takes_the_adam_beta2_it_is_told(tmp_path):
    """TrainConfig.adam_beta2 reaches AdamW, and a resume keeps the betas its own config gives, not the saved
    run's (load_state_dict alone would put the saved ones back), as it does with the learning rate."""
    config = UNetConfig(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)
    train = TrainConfig(steps=2, batch_size=8, lr=1e-3, warmup_steps=1, checkpoint_every=2, adam_beta2=0.95)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    first = Trainer(config, train, x, tmp_path, progress=False).train()
    assert first.optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    told = dataclasses.replace(train, steps=3, adam_beta2=0.99)
    resumed = Trainer(config, told, x, tmp_path, resume=True, progress=False)
    assert resumed.step == 2 and resumed.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    assert resumed.optimizer.state  # the moments came back with the saved run's state
