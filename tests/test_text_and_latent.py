"""Lesson 08's pieces: prompts measured from pixels (checked on drawn bars whose thickness, size and slant are
known), the tokenizer, the text encoder inside the U-Net, guidance over prompts, and the autoencoder."""

import pytest
import torch

from ddpm_lessons.autoencoder import Autoencoder, train_autoencoder
from ddpm_lessons.prompts import build_prompts, measure, thirds, thresholds
from ddpm_lessons.samplers import guided_eps
from ddpm_lessons.text import PAD, TEXT_LENGTH, VOCABULARY, TextEncoder, detokenize, tokenize
from ddpm_lessons.unet import NO_LABEL, UNet, UNetConfig


def _bar(width, height, shear=0.0):
    """A white bar on black, `width` columns by `height` rows, its top shifted right by `shear` * height."""
    x = -torch.ones(1, 1, 28, 28)
    top = (28 - height) // 2
    for r in range(height):
        offset = round(shear * (height - 1 - r))  # the top row (r = 0) moves furthest right
        x[0, 0, top + r, 8 + offset : 8 + offset + width] = 1.0
    return x


def test_properties_of_drawn_bars():
    upright = measure(_bar(3, 20))
    assert upright["thickness"].item() == pytest.approx(3.0)  # area 60 / height 20
    assert upright["size"].item() == pytest.approx(60.0)  # bounding box 3 x 20
    assert upright["slant"].item() == pytest.approx(0.0, abs=1e-9)
    leaning = measure(_bar(3, 20, shear=0.5))["slant"].item()
    assert leaning == pytest.approx(0.5, abs=0.05)  # column moves 0.5 per row upwards: the shear itself
    assert measure(torch.cat([_bar(2, 10), _bar(6, 10)]))["thickness"].tolist() == pytest.approx([2.0, 6.0])


def test_prompts_name_the_outer_thirds_within_each_digit():
    g = torch.Generator().manual_seed(0)
    widths = torch.randint(1, 8, (300,), generator=g)
    images = torch.cat([_bar(int(w), 16) for w in widths])
    labels = torch.randint(0, 10, (300,), generator=g)
    cuts = thresholds(images, labels)
    bins = thirds(images, labels, cuts)
    prompts = build_prompts(images, labels, cuts, keep=1.0)
    for p, b in zip(prompts, bins["thickness"].tolist(), strict=True):
        assert ("thick" in p.split()) == (b == 1) and ("thin" in p.split()) == (b == -1)
    thick = [w for p, w in zip(prompts, widths.tolist(), strict=True) if "thick" in p.split()]
    thin = [w for p, w in zip(prompts, widths.tolist(), strict=True) if "thin" in p.split()]
    assert min(thick) > max(thin)  # within a digit the cut is by width; across digits thick bars are wider
    none = build_prompts(images, labels, cuts, keep=0.0)
    assert all(len(p.split()) == 2 for p in none)  # "a <digit>"


def test_tokenize_round_trip_and_bad_prompts():
    ids = tokenize(["a thick tilted seven", "a two"])
    assert ids.shape == (2, TEXT_LENGTH) and ids[1, 2:].eq(PAD).all()
    assert detokenize(ids) == ["a thick tilted seven", "a two"]
    assert detokenize(torch.full((1, TEXT_LENGTH), NO_LABEL)) == [""]
    with pytest.raises(ValueError, match="unknown word.*'purple'"):
        tokenize("a purple seven")
    with pytest.raises(ValueError, match="at most 6"):
        tokenize("a thin thin thin thin thin seven")
    assert len(VOCABULARY) == 18


def test_text_encoder_reads_words_and_has_a_no_prompt_vector():
    torch.manual_seed(0)
    enc = TextEncoder(32).eval()
    a, b, again = enc(tokenize(["a thick seven", "a thin seven", "a thick seven"]))
    assert torch.allclose(a, again) and not torch.allclose(a, b)
    none = enc(torch.full((2, TEXT_LENGTH), NO_LABEL))
    assert torch.allclose(none[0], enc.out(enc.no_prompt))


def test_unet_with_prompts_and_guidance_over_token_ids():
    torch.manual_seed(0)
    cfg = UNetConfig(image_size=8, in_channels=4, base_channels=16, channel_mults=(1,), attention_resolutions=(),
                     text_conditioning=True)  # fmt: skip
    model = UNet(cfg).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # the zero-initialised output would hide differences
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    tok = tokenize(["a thick seven", "a small two"])
    none = torch.full_like(tok, NO_LABEL)
    with torch.no_grad():
        assert torch.allclose(model(x, t), model(x, t, none))  # no y = the no-prompt vector
        assert not torch.allclose(model(x, t, tok), model(x, t, none))
        expected = 3 * model(x, t, tok) - 2 * model(x, t, none)  # (1 + w) eps_cond - w eps_uncond, w = 2
        assert torch.allclose(guided_eps(model, x, t, tok, guidance=2.0), expected, atol=1e-5)
    with pytest.raises(ValueError, match="token ids of shape"):
        model(x, t, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="token ids must lie in 0..17"):
        model(x, t, torch.full((2, TEXT_LENGTH), 18))
    with pytest.raises(ValueError, match="not both"):
        UNetConfig(num_classes=10, text_conditioning=True)


def test_prompt_dropout_drops_whole_prompts(tmp_path):
    from ddpm_lessons.training import TrainConfig, Trainer

    cfg = UNetConfig(image_size=8, in_channels=4, base_channels=16, channel_mults=(1,), attention_resolutions=(),
                     text_conditioning=True)  # fmt: skip
    latents = torch.rand(16, 4, 8, 8) * 2 - 1
    tokens = tokenize(["a thick seven"] * 16)
    trainer = Trainer(cfg, TrainConfig(steps=3, batch_size=64, label_dropout=0.5, checkpoint_every=3), latents,
                      tmp_path, labels=tokens, progress=False)  # fmt: skip
    seen = []
    eps_theta = trainer.eps_theta
    trainer.eps_theta = lambda xt, t, y, cond: seen.append(y.clone()) or eps_theta(xt, t, y, cond)
    trainer.train()
    ys = torch.cat(seen)
    dropped = (ys == NO_LABEL).all(1)
    assert ((ys == NO_LABEL).any(1) == dropped).all()  # a prompt is dropped whole or not at all
    assert 0.3 < dropped.float().mean().item() < 0.7  # 192 coin flips at p = 0.5
    assert torch.equal(ys[~dropped][0], tokens[0])


def test_autoencoder_shapes_range_and_learning():
    from ddpm_lessons.data import load_mnist

    x = load_mnist("train", source="bundled")[0][:64]
    ae = Autoencoder()
    z = ae.encode(x)
    assert z.shape == (64, 4, 7, 7) and z.abs().max() <= 1
    assert ae.decode(z).shape == x.shape
    with pytest.raises(ValueError, match="expected latents"):
        ae.decode(torch.zeros(1, 4, 14, 14))
    torch.manual_seed(0)
    with torch.no_grad():
        before = torch.mean((Autoencoder()(x) - x) ** 2).item()  # the initial weights train_autoencoder starts from
    trained = train_autoencoder(x, steps=40, batch_size=32, log=None)
    with torch.no_grad():
        after = torch.mean((trained(x) - x) ** 2).item()
    assert after < 0.5 * before
    with torch.no_grad():
        raw, z = trained.encoder(x), trained.encode(x)
    assert z.abs().max() <= 1 and z.std((0, 2, 3)).tolist() == pytest.approx([0.4] * 4, abs=0.08)  # 1 / 2.5 sigmas
    assert torch.allclose(z * trained.latent_scale + trained.latent_mean, raw.clamp(*_bounds(trained)), atol=1e-6)
    if torch.cuda.is_available():  # on a GPU: the same start and batches, returned on the CPU
        on_gpu = train_autoencoder(x, steps=40, batch_size=32, log=None, device="cuda")
        assert next(on_gpu.parameters()).device.type == "cpu"
        with torch.no_grad():
            assert torch.mean((on_gpu(x) - x) ** 2).item() == pytest.approx(after, rel=0.05)


def _bounds(ae):
    # the raw values that encode() maps to -1 and +1, per channel
    return ae.latent_mean - ae.latent_scale, ae.latent_mean + ae.latent_scale


def test_autoencoder_save_and_load_round_trip(tmp_path):
    from ddpm_lessons.checkpoints import load_autoencoder, save_autoencoder

    torch.manual_seed(0)
    ae = Autoencoder().eval()
    save_autoencoder(tmp_path / "ae.safetensors", ae, {"steps": 0, "note": "untrained"})
    loaded, record = load_autoencoder(tmp_path / "ae.safetensors")
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), ae(x))
    assert record["note"] == "untrained" and record["autoencoder"]["latent_channels"] == 4
    with pytest.raises(FileNotFoundError, match="train_latent_text"):
        load_autoencoder(tmp_path / "missing.safetensors")


def test_prompt_control_measures_what_a_generator_obeys():
    """A stand-in generator that draws bars: "thick" ones 7 wide, "thin" ones 1 wide, "small" ones 2 x 8, "large"
    ones 6 x 22 and sheared (a wider box), "tilted" ones sheared; the table must find the thickness and size words obeyed (hit 100%) and
    a generator that ignores its prompt at chance."""
    from ddpm_lessons.prompts import prompt_control

    g = torch.Generator().manual_seed(0)

    def bar_for(words, rng_width, rng_height):
        width = (
            7
            if "thick" in words
            else 1
            if "thin" in words
            else 2
            if "small" in words
            else 6
            if "large" in words
            else rng_width
        )
        height = 8 if "small" in words else 22 if "large" in words else rng_height
        return _bar(width, height, shear=0.5 if "tilted" in words or "large" in words else 0.0)

    def obeys(prompts):
        sizes = torch.randint(2, 6, (len(prompts), 2), generator=g)
        return torch.cat([bar_for(p.split(), int(w), 4 * int(h)) for p, (w, h) in zip(prompts, sizes, strict=True)])

    def ignores(prompts):
        return obeys(["a seven"] * len(prompts))

    train = torch.cat([_bar(int(w), 4 * int(h), shear=float(s)) for w, h, s in zip(
        torch.randint(1, 8, (300,), generator=g), torch.randint(2, 6, (300,), generator=g),
        torch.rand(300, generator=g) * 0.5, strict=True)])  # fmt: skip
    cuts = thresholds(train, torch.arange(300) % 10)
    rows = {r["word"]: r for r in prompt_control(obeys, cuts, per_word=20)}
    for word in ("thin", "thick", "small", "large", "tilted"):
        assert rows[word]["hit"] == 1.0 and rows[word]["opposite"] == 0.0, (word, rows[word])
    assert set(rows["no attribute"]) >= {"digit_right", "thickness_low", "size_high", "slant_low"}
    blind = {r["word"]: r for r in prompt_control(ignores, cuts, per_word=20)}
    assert blind["thin"]["hit"] < 0.5 and blind["thick"]["hit"] < 0.5
