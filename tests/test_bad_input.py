"""Every wrong input a user can give the command line, and the message it gets: one row per case.

A wrong argument is refused where it is parsed (argparse: exit status 2, the argument, the value and the
rule); a wrong file or a combination of options that does not fit is refused by `main` (exit status 2, one
line starting with "error:"), before anything is written, so nothing already written is lost. Add a row
whenever a new argument or a new kind of input appears.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from ddpm_lessons.cli import main

NET = ["--base-channels", "8", "--channel-mults", "1", "2", "--attention", "14", "--batch-size", "8"]
QUIET = ["--source", "bundled", "--no-progress"]
TINY = [*NET, *QUIET]
RUN = "{root}/run/model.safetensors"  # the small eps model the fixture trains

# (arguments, what stderr must say). Each is refused by argparse with exit status 2.
BAD_ARGUMENTS = [
    (["train", "--steps", "-5"], "argument --steps: must be at least 1, got -5"),
    (["train", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
    (["train", "--steps", "1e3"], "argument --steps: expected a whole number, got '1e3'"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["train", "--grad-accum", "0"], "argument --grad-accum: must be at least 1"),
    (["train", "--lr", "0"], "argument --lr: must be greater than 0, got 0"),
    (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite number, got 'nan'"),
    (["train", "--sampling-shift", "0"], "argument --sampling-shift: must be greater than 0, got 0"),
    (["sample", "--checkpoint", "m.safetensors", "--shift", "inf"], "argument --shift: expected a finite number"),
    (["train", "--warmup", "-1"], "argument --warmup: must be 0 or more, got -1"),
    (["train", "--ema-decay", "1"], "argument --ema-decay: must be at least 0 and below 1, got 1"),
    (["train", "--label-dropout", "1.5"], "argument --label-dropout: must be at least 0 and below 1, got 1.5"),
    (["train", "--dropout", "-0.1"], "argument --dropout: must be at least 0 and below 1, got -0.1"),
    (["train", "--base-channels", "0"], "argument --base-channels: must be at least 1"),
    (["train", "--channel-mults", "1", "0"], "argument --channel-mults: must be at least 1, got 0"),
    (["train", "--num-res-blocks", "0"], "argument --num-res-blocks: must be at least 1"),
    (["train", "--attention", "0"], "argument --attention: must be at least 1"),
    (["train", "--T", "0"], "argument --T: must be at least 1"),
    (["train", "--checkpoint-every", "0"], "argument --checkpoint-every: must be at least 1"),
    (["train", "--sample-every", "-1"], "argument --sample-every: must be 0 or more"),
    (["train", "--seed", "-1"], "argument --seed: must be 0 or more"),
    (["train", "--image-size", "0"], "argument --image-size: must be at least 1"),
    (["train", "--super-resolution", "0"], "argument --super-resolution: must be at least 1"),
    (["train", "--channels", "2"], "argument --channels: invalid choice: 2"),
    (["train", "--schedule", "exponential"], "argument --schedule: invalid choice: 'exponential'"),
    (["train", "--lr-decay", "linear"], "argument --lr-decay: invalid choice: 'linear'"),
    (["train", "--dataset", "cifar10"], "argument --dataset: invalid choice: 'cifar10'"),
    (["train", "--source", "web"], "argument --source: invalid choice: 'web'"),
    (["sample", "--checkpoint", "m.safetensors", "--n", "0"], "argument --n: must be at least 1"),
    (["sample", "--checkpoint", "m.safetensors", "--steps", "0"], "argument --steps: must be at least 1"),
    (["sample", "--checkpoint", "m.safetensors", "--eta", "-1"], "argument --eta: must be 0 or more"),
    (["sample", "--checkpoint", "m.safetensors", "--guidance", "-2"], "argument --guidance: must be 0 or more, got -2"),
    (["sample", "--checkpoint", "m.safetensors", "--seed", "-1"], "argument --seed: must be 0 or more"),
    (["sample", "--checkpoint", "m.safetensors", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["sample", "--checkpoint", "m.safetensors", "--sampler", "rk4"], "argument --sampler: invalid choice: 'rk4'"),
    (
        ["sample", "--checkpoint", "m.safetensors", "--spacing", "even"],
        "argument --spacing: must be one of time, logsnr, karras or timesteps separated by commas",
    ),
    (
        ["sample", "--checkpoint", "m.safetensors", "--precision", "fp16"],
        "argument --precision: invalid choice: 'fp16'",
    ),
    (["train", "--objective", "score"], "argument --objective: invalid choice: 'score'"),
    (["train", "--minutes", "0"], "argument --minutes: must be greater than 0, got 0"),
    (["train", "--minutes", "soon"], "argument --minutes: expected a number, got 'soon'"),
    (["train", "--sampling-steps", "0"], "argument --sampling-steps: must be at least 1, got 0"),
    (["train", "--guidance", "-1"], "argument --guidance: must be 0 or more, got -1"),
    (["train", "--sampler", "rk4"], "argument --sampler: invalid choice: 'rk4'"),
    (["evaluate", "--samples", "s.npz", "--floor-draws", "0"], "argument --floor-draws: must be at least 1"),
    (["evaluate", "--samples", "s.npz", "--seed", "-3"], "argument --seed: must be 0 or more"),
    (["train"], "the following arguments are required: --out"),
    (["sample", "--out", "s.npz"], "the following arguments are required: --checkpoint"),
    (["evaluate"], "the following arguments are required: --samples"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_argument_is_refused_where_it_is_parsed(argv, message, tmp_path, capsys):
    if argv[0] == "train" and "--out" not in argv and argv != ["train"]:
        argv = [*argv, "--out", str(tmp_path / "run")]
    if argv[0] == "sample" and "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "s.npz")]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.npz").exists()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny conditional run, and the wrong files a user might point the commands at."""
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "run"
    eps = ["train", "--conditional", "--objective", "eps", "--steps", "2", "--checkpoint-every", "2"]
    assert main([*eps, "--out", str(run), *TINY]) == 0
    flow = ["train", "--conditional", "--objective", "flow", "--steps", "2", "--checkpoint-every", "2"]
    assert main([*flow, "--out", str(root / "flow"), *TINY]) == 0
    model = run / "model.safetensors"
    (root / "truncated.safetensors").write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    (root / "text.safetensors").write_text("not a model")
    torch.save({"weights": torch.zeros(3)}, root / "other.pt")
    (root / "truncated.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:5000])
    from safetensors.torch import load_file, save_file

    record = json.loads((run / "model.json").read_text())
    newer = {**record, "ddpm_lessons_version": "99.0.0"}
    save_file(load_file(str(model)), str(root / "newer.safetensors"), metadata={"record": json.dumps(newer)})
    wrong = {**record, "model": {**record["model"], "base_channels": 16}}
    save_file(load_file(str(model)), str(root / "wrong_shape.safetensors"), metadata={"record": json.dumps(wrong)})
    uncond = {**record, "model": {**record["model"], "num_classes": None}}
    weights = {k: v for k, v in load_file(str(model)).items() if "class_emb" not in k and "label" not in k}
    save_file(weights, str(root / "unconditional.safetensors"), metadata={"record": json.dumps(uncond)})
    images = np.zeros((600, 28, 28), np.uint8)
    labels = np.arange(600) % 10
    np.savez(root / "float.npz", images=images.astype(np.float32) / 255, labels=labels)
    np.savez(root / "no_images.npz", samples=images)
    np.savez(root / "shape.npz", images=np.zeros((600, 32, 32), np.uint8))
    np.savez(root / "labels.npz", images=images, labels=labels + 5)
    np.savez(root / "few.npz", images=images[:40], labels=labels[:40])
    (root / "not.npz").write_text("hello")
    (root / "images").mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(root / "images" / f"{i}.png")
    (root / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


# (arguments with {root} for the fixture's folder, what the one error line must say). `main` returns 2.
BAD_FILES_AND_COMBINATIONS = [
    (["sample", "--checkpoint", "{root}/missing.safetensors"], "no model at"),
    (["sample", "--checkpoint", "{root}/truncated.safetensors"], "it is truncated or not a safetensors file"),
    (["sample", "--checkpoint", "{root}/text.safetensors"], "it is truncated or not a safetensors file"),
    (["sample", "--checkpoint", "{root}/other.pt"], "not a ddpm_lessons training checkpoint"),
    (["sample", "--checkpoint", "{root}/truncated.pt"], "it is truncated or not a checkpoint.pt"),
    (["sample", "--checkpoint", "{root}/newer.safetensors"], "newer than this 0.1.0; update the package"),
    (["sample", "--checkpoint", "{root}/wrong_shape.safetensors"], "weights do not fit the recorded config"),
    (["sample", "--checkpoint", "{root}/images/0.png"], "neither a .safetensors model nor a checkpoint.pt"),
    (["sample", "--checkpoint", "{root}/run/model.safetensors", "--out", "{root}/s.png"], "--out must end in .npz"),
    (["sample", "--checkpoint", "{root}/run/model.safetensors", "--labels", "12"], "--labels must be 'balanced'"),
    (["sample", "--checkpoint", "{root}/unconditional.safetensors", "--labels", "3"], "needs a class-conditional"),
    (
        ["sample", "--checkpoint", "{root}/run/model.safetensors", "--sampler", "ddim", "--steps", "2000"],
        "DDIM needs 1 <= steps <= T",
    ),
    (
        ["sample", "--checkpoint", "{root}/run/model.safetensors", "--sampler", "dpmpp-2m", "--steps", "2000"],
        "pass steps between 1 and 1000",
    ),
    (["evaluate", "--samples", "{root}/missing.npz"], "no samples at"),
    (["evaluate", "--samples", "{root}/not.npz"], "it is not an .npz file, or it is truncated"),
    (["evaluate", "--samples", "{root}/no_images.npz"], "has no 'images' array (it has ['samples'])"),
    (["evaluate", "--samples", "{root}/float.npz"], "images are float32, expected uint8 pixels"),
    (["evaluate", "--samples", "{root}/shape.npz"], "the MNIST metrics need (N, 28, 28)"),
    (["evaluate", "--samples", "{root}/labels.npz"], "labels must be 600 whole numbers 0..9"),
    (["train", "--dataset", "folder", "--out", "{root}/r1"], "needs --data DIR"),
    (["train", "--dataset", "folder", "--data", "{root}/nowhere", "--out", "{root}/r2"], "does not exist"),
    (
        ["train", "--dataset", "folder", "--data", "{root}/images", "--out", "{root}/r3"],
        "cannot read 1 of the 4 images",
    ),
    (
        ["train", "--dataset", "folder", "--data", "{root}/images", "--conditional", "--out", "{root}/r4"],
        "needs labels",
    ),
    (["train", "--super-resolution", "5", "--out", "{root}/r5"], "must divide the image size 28"),
    (
        ["train", "--conditional", "--steps", "4", "--resume", "--out", "{root}/run", *NET, "--base-channels", "16"],
        "model.base_channels: checkpoint has 8, this run has 16",
    ),  # fmt: skip
    (["train", "--conditional", "--steps", "4", "--out", "{root}/run", *NET], "--resume"),
    (
        ["train", "--conditional", "--steps", "4", "--resume", "--objective", "flow", "--out", "{root}/run", *NET],
        "was trained with objective 'eps', not 'flow'; resume it with --objective eps",
    ),
    (
        ["sample", "--checkpoint", "{root}/run/model.safetensors", "--sampler", "euler"],
        "sampler 'euler' does not fit a model trained with objective 'eps'; use one of ddpm, ddim, dpmpp-2m, unipc, heun",
    ),
    (
        ["sample", "--checkpoint", "{root}/flow/model.safetensors", "--sampler", "ddim"],
        "sampler 'ddim' does not fit a model trained with objective 'flow'; use one of euler, heun, dpmpp-2m, unipc",
    ),
    (
        ["sample", "--checkpoint", RUN, "--sampler", "unipc", "--steps", "3", "--spacing", "900,500"],
        "the solver visits 3 timesteps here: give 3 ints",
    ),
    (
        ["sample", "--checkpoint", RUN, "--sampler", "dpmpp-2m", "--steps", "3", "--spacing", "500,900,100"],
        "must fall strictly from at most T-1",
    ),
    (
        ["sample", "--checkpoint", "{root}/run/model.safetensors", "--sampler", "ddim", "--spacing", "logsnr"],
        "applies to the dpmpp-2m, unipc, heun samplers",
    ),
    (
        ["sample", "--checkpoint", "{root}/run/model.safetensors", "--shift", "2"],
        "objective 'eps' has none: leave the shift at 1",
    ),
    (
        [*"train --conditional --objective eps --steps 2 --sampling-shift 2 --out {root}/run --resume".split(), *NET],
        "objective 'eps' has none: leave the shift at 1",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    "argv,message", BAD_FILES_AND_COMBINATIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_a_bad_file_or_combination_gets_one_line_and_loses_nothing(argv, message, files, capsys):
    argv = [a.replace("{root}", str(files)) for a in argv]
    if argv[0] == "sample" and "--out" not in argv:
        argv += ["--out", str(files / "out.npz")]
    if argv[0] == "train":
        argv += QUIET
    before = {p: p.read_bytes() for p in (files / "run").iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert {p: p.read_bytes() for p in (files / "run").iterdir()} == before  # nothing written, nothing lost
    assert not (files / "out.npz").exists()


def test_evaluate_says_when_there_are_too_few_samples_for_the_distance(files, capsys):
    assert main(["evaluate", "--samples", str(files / "few.npz")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 40
    assert "note: with 40 samples the Frechet distance is mostly noise" in captured.err


def test_a_run_folder_survives_a_resume_from_a_truncated_checkpoint(files, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    (run / "checkpoint.pt").write_bytes((files / "truncated.pt").read_bytes())
    model_before = (run / "model.safetensors").read_bytes()
    assert main(["train", "--conditional", "--steps", "4", "--resume", "--out", str(run), *TINY]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == model_before
