"""The command line as a user runs it: train a tiny model, sample it to .npz, evaluate, doctor."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_lessons.cli import main

TINY_ARGS = ["--base-channels", "8", "--channel-mults", "1", "2", "--attention", "14", "--batch-size", "8",
             "--source", "bundled", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--conditional", "--objective", "eps", "--steps", "3", "--checkpoint-every", "3"]
    assert main([*args, "--out", str(out), *TINY_ARGS]) == 0
    return out


def test_sample_writes_npz_and_grid_reproducibly(run_dir, tmp_path, capsys):
    args = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--n", "12", "--steps", "4",
            "--guidance", "1", "--seed", "5", "--no-progress"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a.npz"), "--grid", str(tmp_path / "a.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["images"].shape == (12, 28, 28) and a["images"].dtype == np.uint8
    assert a["labels"].dtype == np.int64 and a["labels"].tolist() == [i % 10 for i in range(12)]
    assert np.array_equal(a["images"], b["images"])
    assert (tmp_path / "a.png").stat().st_size > 0
    assert main([*args, "--labels", "7", "--out", str(tmp_path / "c.npz")]) == 0
    assert set(np.load(tmp_path / "c.npz")["labels"].tolist()) == {7}


def test_sample_from_training_checkpoint_with_ddpm(run_dir, tmp_path):
    out = tmp_path / "d.npz"
    args = ["sample", "--checkpoint", str(run_dir / "checkpoint.pt"), "--n", "2", "--sampler", "ddpm"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert np.load(out)["images"].shape == (2, 28, 28)


def test_evaluate_prints_metrics_with_their_floor(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npz"
    main(["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--n", "20", "--steps", "2",
          "--out", str(out), "--no-progress"])  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", "--samples", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 20 and 0 <= result["conditional_accuracy"] <= 1
    assert result["frechet_distance_real_vs_real"] > 0 and result["frechet_distance"] > 0


def test_resume_past_the_end_and_bad_input(run_dir, tmp_path, capsys):
    assert main(["train", "--conditional", "--steps", "3", "--resume", "--out", str(run_dir), *TINY_ARGS]) == 0
    assert "already at step 3" in capsys.readouterr().out
    assert main(["train", "--steps", "3", "--out", str(run_dir), *TINY_ARGS]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--out", str(tmp_path / "x.png")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert main(["evaluate", "--samples", str(tmp_path / "missing.npz")]) == 2
    assert "no samples at" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no model at" in capsys.readouterr().err
    assert main(["train", "--dataset", "folder", "--out", str(tmp_path / "f")]) == 2
    assert "needs --data DIR" in capsys.readouterr().err


def test_train_on_an_image_folder(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "--dataset", "folder", "--data", str(tmp_path), "--image-size", "16", "--steps", "2",
            "--out", str(out), *TINY_ARGS[:-3], "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "checkpoint.json").read_text())["model"]["in_channels"] == 3


def test_doctor_reports(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert (
        "Python" in out and "bundled MNIST sample" in out and "[ok  ] pretrained MNIST model" in out and code in (0, 1)
    )


def test_train_a_super_resolution_model(tmp_path, capsys):
    """--super-resolution 7: the model takes the upsampled 7x7 copy as an extra input channel, the record
    says so, and `sample` (which has no image to condition on) refuses it with a pointer to the lesson."""
    out = tmp_path / "sr"
    assert main(["train", "--super-resolution", "7", "--steps", "2", "--out", str(out), *TINY_ARGS]) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["model"]["cond_channels"] == 1
    assert record["condition"] == {"kind": "super_resolution", "low_size": 7}
    assert main(["sample", "--checkpoint", str(out / "model.safetensors"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "conditioned on an image" in capsys.readouterr().err
    bad = ["train", "--super-resolution", "5", "--steps", "2", "--out", str(tmp_path / "bad"), *TINY_ARGS]
    assert main(bad) == 2
    assert "must divide the image size 28" in capsys.readouterr().err


def test_the_record_carries_a_sampling_setting_that_sample_uses(tmp_path, capsys):
    run = tmp_path / "run"
    train = [
        "train",
        "--conditional",
        "--objective",
        "eps",
        "--steps",
        "2",
        "--sampler",
        "ddim",
        "--sampling-steps",
        "3",
        "--guidance",
        "1.5",
    ]
    assert main([*train, "--out", str(run), *TINY_ARGS]) == 0
    assert json.loads((run / "model.json").read_text())["sampling"] == {"sampler": "ddim", "steps": 3, "guidance": 1.5,
                                                                        "shift": 1.0}  # fmt: skip
    base = ["sample", "--checkpoint", str(run / "model.safetensors"), "--n", "6", "--seed", "2"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a.npz")]) == 0  # progress on: it says what it uses
    assert "sampling with ddim, 3 model evaluations, guidance 1.5 (sampler, steps, guidance from the checkpoint's" in (
        capsys.readouterr().out
    )
    told = ["--sampler", "ddim", "--steps", "3", "--guidance", "1.5", "--no-progress"]
    assert main([*base, *told, "--out", str(tmp_path / "b.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
    capsys.readouterr()
    assert main([*base, "--steps", "2", "--out", str(tmp_path / "c.npz")]) == 0  # what is told wins, the rest is read
    assert "sampling with ddim, 2 model evaluations, guidance 1.5 (sampler, guidance from" in capsys.readouterr().out


def test_a_flow_model_trains_for_minutes_and_samples_with_its_own_samplers(tmp_path, capsys):
    run = tmp_path / "flow"
    assert main(["train", "--conditional", "--objective", "flow", "--minutes", "0.02", "--out", str(run),
                 *TINY_ARGS]) == 0  # fmt: skip
    out = capsys.readouterr().out
    record = json.loads((run / "model.json").read_text())
    from ddpm_lessons.training import DIGITS_RECIPE

    assert record["train"]["objective"] == "flow" and record["sampling"] == DIGITS_RECIPE["sampling"]  # the recipe's
    assert f"done: step {record['step']} in " in out and "objective flow" in out
    for sampler in ("euler", "heun", "dpmpp-2m", "unipc"):
        path = tmp_path / f"{sampler}.npz"
        args = ["sample", "--checkpoint", str(run / "model.safetensors"), "--n", "4", "--sampler", sampler]
        assert main([*args, "--steps", "5", "--guidance", "1", "--no-progress", "--out", str(path)]) == 0
        assert np.load(path)["images"].shape == (4, 28, 28)
    drawn = {sampler: np.load(tmp_path / f"{sampler}.npz")["images"] for sampler in ("euler", "dpmpp-2m", "unipc")}
    assert not np.array_equal(drawn["dpmpp-2m"], drawn["euler"])  # with 5 evaluations neither is Euler's method
    assert not np.array_equal(drawn["unipc"], drawn["dpmpp-2m"])
    # the record's shift of the flow-time grid is what sample uses unless told another
    base = ["sample", "--checkpoint", str(run / "model.safetensors"), "--n", "4", "--steps", "3", "--seed", "1"]
    assert main([*base, "--out", str(tmp_path / "record.npz")]) == 0
    assert f"flow times shifted by {DIGITS_RECIPE['sampling']['shift']:g}" in capsys.readouterr().out
    told = ["--shift", str(DIGITS_RECIPE["sampling"]["shift"]), "--no-progress"]
    assert main([*base, *told, "--out", str(tmp_path / "told.npz")]) == 0
    assert main([*base, "--shift", "1", "--no-progress", "--out", str(tmp_path / "even.npz")]) == 0
    images = {name: np.load(tmp_path / f"{name}.npz")["images"] for name in ("record", "told", "even")}
    assert np.array_equal(images["record"], images["told"]) and not np.array_equal(images["record"], images["even"])
    # another shift written into the record is the one sample reads; record_sampling without one keeps it
    from ddpm_lessons.checkpoints import record_sampling

    assert record_sampling(run / "model.safetensors", "heun", 3, 0.0, shift=1.7)["sampling"]["shift"] == 1.7
    assert record_sampling(run / "model.safetensors", "heun", 3, 0.0)["sampling"]["shift"] == 1.7
    assert main([*base, "--no-progress", "--out", str(tmp_path / "r17.npz")]) == 0
    assert main([*base, "--shift", "1.7", "--no-progress", "--out", str(tmp_path / "t17.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "r17.npz")["images"], np.load(tmp_path / "t17.npz")["images"])


def test_a_flow_record_without_a_shift_samples_on_an_even_grid(tmp_path, capsys):
    shipped = Path(__file__).parents[1] / "data" / "checkpoints" / "mnist_flow.safetensors"
    assert "shift" not in json.loads(shipped.with_suffix(".json").read_text())["sampling"]  # written before the field
    base = ["sample", "--checkpoint", str(shipped), "--n", "2", "--steps", "2", "--seed", "3"]
    assert main([*base, "--out", str(tmp_path / "record.npz")]) == 0
    assert (
        "an even grid of flow times (sampler, guidance, shift from the checkpoint's record" in capsys.readouterr().out
    )
    assert main([*base, "--shift", "1", "--no-progress", "--out", str(tmp_path / "even.npz")]) == 0
    assert main([*base, "--shift", "3", "--no-progress", "--out", str(tmp_path / "shifted.npz")]) == 0
    images = {name: np.load(tmp_path / f"{name}.npz")["images"] for name in ("record", "even", "shifted")}
    assert np.array_equal(images["record"], images["even"]) and not np.array_equal(images["record"], images["shifted"])


def test_the_logit_normal_location_reaches_the_record_and_uniform_times_refuse_one(tmp_path, capsys):
    run = tmp_path / "loc"
    args = ["train", "--conditional", "--objective", "flow", "--flow-time", "logit-normal", "--steps", "1"]
    assert main([*args, "--flow-time-loc", "0.5", "--out", str(run), *TINY_ARGS]) == 0
    assert json.loads((run / "model.json").read_text())["train"]["flow_time_loc"] == 0.5
    bad = ["train", "--conditional", "--objective", "flow", "--flow-time", "uniform", "--flow-time-loc", "0.5"]
    assert main([*bad, "--steps", "1", "--out", str(tmp_path / "bad"), *TINY_ARGS]) == 2
    assert "leave it at 0 for uniform times" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_shift_is_refused_for_a_model_without_flow_times(run_dir, tmp_path, capsys):
    args = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--n", "2", "--shift", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "s.npz")]) == 2
    assert "has none: leave the shift at 1" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()
    train = ["train", "--objective", "eps", "--steps", "1", "--sampling-shift", "2", "--out", str(tmp_path / "run")]
    assert main([*train, *TINY_ARGS]) == 2
    assert "has none: leave the shift at 1" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_bare_train_on_digits_is_the_recipe_and_a_flag_given_wins(tmp_path):
    from ddpm_lessons.training import DIGITS_RECIPE

    run = tmp_path / "recipe"
    args = ["train", "--conditional", "--steps", "1", "--source", "bundled", "--no-progress"]
    assert main([*args, "--out", str(run)]) == 0
    record = json.loads((run / "model.json").read_text())
    for field, value in DIGITS_RECIPE["model"].items():
        assert record["model"][field] == (list(value) if isinstance(value, tuple) else value), field
    from ddpm_lessons.solvers import native_bf16

    for field, value in DIGITS_RECIPE["train"].items():
        if field == "cpu_bf16":  # the recipe's bfloat16 only on a CPU that computes it natively
            value = value and native_bf16("cpu")
        assert record["train"][field] == value, field
    assert record["sampling"] == DIGITS_RECIPE["sampling"]
    assert main([*args, "--base-channels", "8", "--lr", "1e-3", "--out", str(tmp_path / "told")]) == 0
    told = json.loads((tmp_path / "told" / "model.json").read_text())
    assert told["model"]["base_channels"] == 8 and told["train"]["lr"] == 1e-3
    assert told["model"]["channel_mults"] == [1, 2, 4]  # the rest still from the recipe


def test_record_sampling_writes_the_measured_setting_and_keeps_the_weights(tmp_path):
    from safetensors.torch import load_file

    from ddpm_lessons.checkpoints import record_sampling

    run = tmp_path / "run"
    assert main(["train", "--conditional", "--objective", "eps", "--steps", "1", "--out", str(run), *TINY_ARGS]) == 0
    model = run / "model.safetensors"
    before = load_file(str(model))
    record = record_sampling(model, "dpmpp-2m", 7, 0.3)
    assert record["sampling"] == {"sampler": "dpmpp-2m", "steps": 7, "guidance": 0.3, "shift": 1.0}
    assert json.loads((run / "model.json").read_text())["sampling"] == record["sampling"]
    after = load_file(str(model))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="sampler 'euler' does not fit a model trained with objective 'eps'"):
        record_sampling(model, "euler", 10, 0.0)
    with pytest.raises(ValueError, match="objective 'eps' has none: leave the shift at 1"):
        record_sampling(model, "dpmpp-2m", 7, 0.3, shift=2.0)


def test_sample_precision_auto_is_bf16_only_on_a_cpu_that_computes_it_natively(run_dir, tmp_path, capsys, monkeypatch):
    from ddpm_lessons import solvers

    args = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--n", "4", "--steps", "3", "--seed", "1"]
    results = {}
    for native in (False, True):
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            monkeypatch.setattr(torch.cpu, name, lambda native=native: native, raising=False)
        assert solvers.native_bf16("cpu") is native and solvers.native_bf16("meta") is False
        assert main([*args, "--out", str(tmp_path / f"auto{native}.npz")]) == 0
        said = capsys.readouterr().out
        assert ("runs in bfloat16" in said) is native
        results[native] = np.load(tmp_path / f"auto{native}.npz")["images"]
    for precision in ("fp32", "bf16"):
        assert (
            main([*args, "--precision", precision, "--no-progress", "--out", str(tmp_path / f"{precision}.npz")]) == 0
        )
    assert np.array_equal(results[False], np.load(tmp_path / "fp32.npz")["images"])  # auto on an older CPU: float32
    assert np.array_equal(results[True], np.load(tmp_path / "bf16.npz")["images"])  # auto on a native one: bf16


def test_a_resume_takes_untold_options_from_the_run_itself_not_the_recipe(tmp_path):
    """A run started with other options than today's recipe goes on as it started: --resume reads them from its
    checkpoint's record (objective, learning rate, precision, ...), and what is told still wins."""
    run = tmp_path / "run"
    first = ["train", "--conditional", "--objective", "eps", "--lr", "1e-3", "--precision", "fp32", "--steps", "2",
             "--embedding", "scale-shift", "--residual-init", "zero", "--adam-beta2", "0.99", "--checkpoint-every", "2",
             "--out", str(run), *TINY_ARGS]  # fmt: skip
    assert main(first) == 0
    assert main(["train", "--conditional", "--steps", "3", "--checkpoint-every", "3", "--resume", "--out", str(run),
                 *TINY_ARGS]) == 0  # fmt: skip
    record = json.loads((run / "model.json").read_text())
    assert record["step"] == 3
    assert (record["train"]["objective"], record["train"]["lr"], record["train"]["cpu_bf16"]) == ("eps", 1e-3, False)
    assert record["train"]["adam_beta2"] == 0.99
    assert record["model"]["scale_shift"] is True  # the weights of its AdaGN blocks load back into AdaGN blocks
    assert record["model"]["zero_init_residual"] is True  # how it started, though a resume loads its weights


def test_train_leaves_its_process_group_however_the_run_ends(tmp_path, monkeypatch):
    """Under torchrun every rank must leave the gloo group before it exits (distributed.World.close): after a run,
    after a run that diverged, and when the run was already done. One process stands in; the call is what counts."""
    from ddpm_lessons.distributed import World
    from ddpm_lessons.training import Trainer, TrainingDiverged

    closed = []
    monkeypatch.setattr(World, "close", lambda self: closed.append(True))

    def train(out, *more):
        return main(["train", "--conditional", "--objective", "eps", "--steps", "1", "--out", str(tmp_path / out),
                     *more, *TINY_ARGS])  # fmt: skip

    assert train("run") == 0 and closed == [True]
    assert train("run", "--resume") == 0 and closed == [True] * 2  # already at its steps: the group still left

    def diverge(self):
        raise TrainingDiverged("loss became nan")

    monkeypatch.setattr(Trainer, "train", diverge)
    assert train("nan") == 2 and closed == [True] * 3
