"""The model that ships in data/checkpoints/: its record, its size, and that it draws the digits asked for."""

import json

import torch

from ddpm_lessons.checkpoints import PRETRAINED_DIR, PRETRAINED_MNIST, load_pretrained
from ddpm_lessons.metrics import conditional_accuracy
from ddpm_lessons.samplers import sample_ddim


def test_record_and_size():
    assert PRETRAINED_MNIST.stat().st_size <= 8 * 2**20  # the budget: at most 8 MB
    model, schedule, record = load_pretrained()
    assert record == json.loads(PRETRAINED_MNIST.with_suffix(".json").read_text())  # metadata == the .json
    assert record["model"]["num_classes"] == 10 and record["model"]["image_size"] == 28
    assert record["schedule"] == {"kind": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    assert record["train"]["label_dropout"] > 0  # it can also sample without labels (classifier-free guidance)
    # the setting data/checkpoints/README.md measures and `sample` uses when given none
    assert record["sampling"] == {"sampler": "dpmpp-2m", "steps": 10, "guidance": 0.05, "shift": 1.0}
    assert schedule.T == 1000 and not model.training
    log = [json.loads(line) for line in (PRETRAINED_DIR / "train_log.jsonl").read_text().splitlines()]
    # The shipped log is this model's run (it logs every 50 steps and at the step where the run ends).
    assert record["step"] - record["train"]["log_every"] < log[-1]["step"] <= record["step"]


@torch.no_grad()
def test_it_draws_the_digits_asked_for():
    model, schedule, _ = load_pretrained()
    y = torch.arange(20) % 10
    x = sample_ddim(model, schedule, (20, 1, 28, 28), steps=20, y=y, guidance=1.0,
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert x.shape == (20, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert conditional_accuracy(x, y) >= 0.8  # a broken loader draws noise: about 10%


@torch.no_grad()
def test_the_super_resolution_model_beats_bicubic():
    """The shipped SR3 model (lesson 07): its record says 7x7 -> 28x28, and on 20 held-out digits its samples
    are closer to the originals than bicubic upsampling (an untrained model's samples are noise: about 5 dB)."""
    from ddpm_lessons.checkpoints import PRETRAINED_SR7
    from ddpm_lessons.data import load_mnist
    from ddpm_lessons.superres import bicubic_upsample, conditioned, low_resolution, psnr

    assert PRETRAINED_SR7.stat().st_size <= 2 * 2**20
    model, schedule, record = load_pretrained(name="mnist_sr7")
    assert record["condition"] == {"kind": "super_resolution", "low_size": 7} and model.config.cond_channels == 1
    x, _ = load_mnist("test", source="bundled")
    x = x[:20]
    c = bicubic_upsample(low_resolution(x, 7), 28)
    sr = sample_ddim(conditioned(model, c), schedule, c.shape, steps=20, generator=torch.Generator().manual_seed(0))
    assert psnr(sr, x).mean() > psnr(c, x).mean() + 1.0  # dB


@torch.no_grad()
def test_the_latent_text_model_follows_its_prompt():
    """Lesson 08's shipped pair: the record says text-conditioned 4 x 7 x 7 latents; twenty "thick" sevens come out
    thicker than twenty "thin" ones, and the classifier reads them as sevens (an untrained pair gives blobs)."""
    from ddpm_lessons.checkpoints import PRETRAINED_LATENT_TEXT, load_autoencoder
    from ddpm_lessons.prompts import generate, measure

    ae, ae_record = load_autoencoder()
    model, schedule, record = load_pretrained(name="latent_text")
    assert record["model"]["text_conditioning"] and record["model"]["in_channels"] == ae.config.latent_channels == 4
    assert PRETRAINED_LATENT_TEXT.stat().st_size <= 8 * 2**20 and len(ae_record["prompt_thresholds"]["slant"]) == 10
    thick, thin = (generate(model, schedule, ae, [f"a {w} seven"] * 20, steps=10, seed=0) for w in ("thick", "thin"))
    assert measure(thick)["thickness"].median() > measure(thin)["thickness"].median() + 1.0  # pixels of stroke
    assert conditional_accuracy(torch.cat([thick, thin]), torch.full((40,), 7)) >= 0.8


@torch.no_grad()
def test_the_flow_model_is_a_flow_model_that_draws_the_digits_asked_for():
    """Lesson 11's shipped model: at most 8 MB, its record says flow and carries the measured sampling setting,
    its log is its run, and ten Euler steps draw the digits asked for (an untrained velocity gives noise)."""
    from ddpm_lessons.checkpoints import PRETRAINED_FLOW
    from ddpm_lessons.flow import sample_flow
    from ddpm_lessons.objectives import objective_of

    assert PRETRAINED_FLOW.stat().st_size <= 8 * 2**20
    model, _, record = load_pretrained(name="mnist_flow")
    assert record == json.loads(PRETRAINED_FLOW.with_suffix(".json").read_text())  # metadata == the .json
    assert objective_of(record) == "flow" and record["train"]["label_dropout"] > 0
    assert record["sampling"] == {"sampler": "heun", "steps": 20, "guidance": 0.05}  # data/checkpoints/README.md
    log = [json.loads(line) for line in (PRETRAINED_DIR / "mnist_flow_train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == record["step"] and 0 <= record["train_seconds"] - 60 * record["train"]["minutes"] < 60
    y = torch.arange(20) % 10
    x = sample_flow(model, (20, 1, 28, 28), steps=10, y=y, generator=torch.Generator().manual_seed(0))
    assert conditional_accuracy(x.clamp(-1, 1), y) >= 0.8
