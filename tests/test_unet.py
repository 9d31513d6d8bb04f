"""The U-Net: its time embedding against the written formula and diffusers, shapes, conditioning, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm_lessons.fused import dropout_keep_mask, norm_silu
from ddpm_lessons.unet import ResBlock, SelfAttention, UNet, UNetConfig, count_parameters, timestep_embedding
from ddpm_lessons.unet import attention as unet_attention


def test_timestep_embedding_matches_the_formula():
    t, dim = torch.tensor([0, 1, 17, 999]), 16
    half = dim // 2
    emb = timestep_embedding(t, dim)
    for b, tb in enumerate(t.tolist()):
        for i in range(half):
            w = 10_000 ** (-i / (half - 1))
            assert emb[b, i].item() == pytest.approx(math.sin(tb * w), abs=1e-4)  # sines first
            assert emb[b, half + i].item() == pytest.approx(math.cos(tb * w), abs=1e-4)  # then cosines


def test_timestep_embedding_matches_diffusers():
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    t = torch.arange(0, 1000, 37)
    theirs = embeddings.get_timestep_embedding(t, 32, flip_sin_to_cos=False, downscale_freq_shift=1)
    assert torch.allclose(timestep_embedding(t, 32), theirs, atol=1e-4)


@pytest.mark.parametrize(
    "size,channels,mults,attn",
    [
        (28, 1, (1, 2, 2), (7,)),
        (32, 3, (1, 2, 2), (8,)),
        (64, 3, (1, 1, 2, 2), (8,)),
        (128, 1, (1, 1, 2, 2, 2), (8,)),
    ],
)
def test_shapes_for_every_supported_size(size, channels, mults, attn):
    cfg = UNetConfig(image_size=size, in_channels=channels, base_channels=8, channel_mults=mults,
                     attention_resolutions=attn, groups=4)  # fmt: skip
    model = UNet(cfg)
    x = torch.randn(2, channels, size, size)
    assert model(x, torch.tensor([0, 999])).shape == x.shape


def test_class_conditioning_and_the_no_label_id():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, num_classes=10, dropout=0.0)).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # zero-initialised: make the output depend on input
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 10])
    a, b = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([4, 4]))
    assert not torch.allclose(a, b)
    assert torch.equal(model(x, t, torch.tensor([-1, -1])), model(x, t))  # -1 is "no label", as y=None


def test_output_starts_at_zero_and_parameter_count_is_small():
    model = UNet(UNetConfig(num_classes=10))
    assert model(torch.randn(1, 1, 28, 28), torch.tensor([5])).abs().max().item() == 0.0
    assert 0.8e6 < count_parameters(model) < 2e6


@pytest.mark.parametrize("heads", [1, 4])
def test_self_attention_matches_torchs_multihead_attention(heads):
    """Same weights in torch.nn.MultiheadAttention, fed the normalised positions as (B, HW, C) tokens."""
    torch.manual_seed(0)
    attention = SelfAttention(channels=16, heads=heads, groups=4)
    for p in attention.parameters():
        torch.nn.init.normal_(p, std=0.3)  # biases too, so that every term of the computation shows
    reference = torch.nn.MultiheadAttention(16, heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight.flatten(1))  # rows: q, then k, then v, head by head
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.proj.weight.flatten(1))
        reference.out_proj.bias.copy_(attention.proj.bias)
    x = torch.randn(3, 16, 6, 5)
    tokens = attention.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
    expected = x + reference(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(attention(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_in_bfloat16_on_a_cpu_is_computed_in_float32():
    """Under the CPU autocast of --precision bf16, unet.attention computes softmax(q k^T / sqrt(d)) v in float32
    (PyTorch's bfloat16 kernel is slower on a CPU) and hands back bfloat16: the same numbers as the float32 kernel
    on the same bfloat16 inputs, rounded once, where the bfloat16 kernel rounds inside; gradients flow back."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2, 49, 32).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = unet_attention(q, k, v)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).bfloat16()
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)
    assert not torch.equal(F.scaled_dot_product_attention(q, k, v), expected)  # the kernel it stands in for differs
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in (q, k, v))
    q32 = torch.randn(2, 1, 9, 8)
    assert torch.equal(unet_attention(q32, q32, q32), F.scaled_dot_product_attention(q32, q32, q32))  # float32: as is


def _random_block(scale_shift: bool, dropout: float = 0.0) -> ResBlock:
    torch.manual_seed(1)
    block = ResBlock(8, 16, 12, dropout, groups=4, scale_shift=scale_shift)
    for param in block.parameters():  # GroupNorm starts at weight 1, bias 0: move it off that too
        torch.nn.init.normal_(param, std=0.3)
    return block


def test_scale_shift_block_is_adagn_written_out():
    """AdaGN(h, emb) = (1 + s) GroupNorm(h) + b (Dhariwal & Nichol 2021, Sec. 3), from F.group_norm and plain
    arithmetic, against the block; and in training mode with dropout, with the same mask."""
    x, emb = torch.randn(3, 8, 14, 14), torch.randn(3, 12)

    def by_hand(block, keep=None, p=0.0):
        h = F.conv2d(F.silu(F.group_norm(x, 4, block.norm1.weight, block.norm1.bias)), block.conv1.weight,
                     block.conv1.bias, padding=1)  # fmt: skip
        s, b = (F.silu(emb) @ block.emb_proj.weight.T + block.emb_proj.bias).split(16, dim=1)
        normed = F.group_norm(h, 4, block.norm2.weight, block.norm2.bias)
        h = F.silu((1 + s[:, :, None, None]) * normed + b[:, :, None, None])
        if keep is not None:
            h = h * keep / (1 - p)
        return F.conv2d(x, block.skip.weight, block.skip.bias) + F.conv2d(h, block.conv2.weight, block.conv2.bias,
                                                                          padding=1)  # fmt: skip

    block = _random_block(scale_shift=True).eval()
    assert block.emb_proj.out_features == 32  # a scale and a shift per output channel
    assert torch.allclose(block(x, emb), by_hand(block), atol=1e-5)

    block = _random_block(scale_shift=True, dropout=0.3).train()
    torch.manual_seed(5)
    out = block(x, emb)
    torch.manual_seed(5)
    keep = dropout_keep_mask((3, 16, 14, 14), 0.3)
    assert torch.allclose(out, by_hand(block, keep, 0.3), atol=1e-5)


def test_scale_shift_with_no_embedding_is_the_additive_block_with_none():
    """With the embedding's projection at zero, s = b = 0 and the additive shift is 0: the two blocks agree."""
    x, emb = torch.randn(2, 8, 7, 7), torch.randn(2, 12)
    ss, add = _random_block(scale_shift=True).eval(), _random_block(scale_shift=False).eval()
    add.load_state_dict({k: v for k, v in ss.state_dict().items() if not k.startswith("emb_proj")}, strict=False)
    for block in (ss, add):
        torch.nn.init.zeros_(block.emb_proj.weight)
        torch.nn.init.zeros_(block.emb_proj.bias)
    assert torch.allclose(ss(x, emb), add(x, emb), atol=1e-6)


def test_a_scale_shift_unet_depends_on_time_and_label_and_trains():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, groups=4, num_classes=10, dropout=0.0, scale_shift=True))
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # zero-initialised: make the output depend on input
    x = torch.randn(2, 1, 28, 28)
    out = model(x, torch.tensor([10, 10]), torch.tensor([3, 3]))
    assert not torch.allclose(out, model(x, torch.tensor([10, 10]), torch.tensor([4, 4])))
    assert not torch.allclose(out, model(x, torch.tensor([900, 900]), torch.tensor([3, 3])))
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.label_emb.parameters())


def _blocks(model: UNet) -> tuple[list[ResBlock], list[SelfAttention]]:
    return [m for m in model.modules() if isinstance(m, ResBlock)], [
        m for m in model.modules() if isinstance(m, SelfAttention)
    ]


def test_zero_init_residual_starts_each_block_as_its_skip_path_and_changes_nothing_else():
    """With zero_init_residual every residual block returns its skip path's output, whatever the embedding, and every
    attention layer returns its input; every other weight is the one the default initialisation draws."""
    config = {"base_channels": 8, "groups": 4, "num_classes": 10, "dropout": 0.0}
    torch.manual_seed(0)
    default = UNet(UNetConfig(**config))
    torch.manual_seed(0)
    zeroed = UNet(UNetConfig(**config, zero_init_residual=True))
    resblocks, attentions = _blocks(zeroed)
    assert len(resblocks) == 11 and len(attentions) == 4  # 3 down, 2 in the middle, 6 up; the middle's and at 7 x 7
    last = set()  # the state-dict keys of the zeroed layers
    for name, module in zeroed.named_modules():
        layer = "conv2" if isinstance(module, ResBlock) else "proj" if isinstance(module, SelfAttention) else None
        if layer:
            last |= {f"{name}.{layer}.weight", f"{name}.{layer}.bias"}
    assert len(last) == 2 * (11 + 4)
    for key, value in zeroed.state_dict().items():
        if key in last:
            assert not value.any() and default.state_dict()[key].any(), key
        else:
            assert torch.equal(value, default.state_dict()[key]), key
    for block, plain in zip(resblocks, _blocks(default)[0], strict=True):
        x, emb = torch.randn(2, block.conv1.in_channels, 7, 7), torch.randn(2, block.emb_proj.in_features)
        assert torch.equal(block(x, emb), block.skip(x))
        assert not torch.allclose(plain(x, emb), plain.skip(x))  # the default block is not its skip path
    for attention in attentions:
        x = torch.randn(2, attention.norm.num_channels, 7, 7)
        assert torch.equal(attention(x), x)


def test_a_zero_initialised_unet_reaches_every_layer_by_its_third_update():
    """The output layer and the blocks' last layers start at zero. The first gradient reaches only the output layer;
    the second the blocks' last layers and the skip path (input convolution, skips, resampling, last norm), but not the
    layers inside a branch before its zeroed last layer; the third every parameter: nothing stays stuck at zero."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, groups=4, dropout=0.0, zero_init_residual=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, t, target = torch.randn(4, 1, 28, 28), torch.tensor([5, 200, 500, 900]), torch.randn(4, 1, 28, 28)
    reached = []
    for _ in range(3):
        optimizer.zero_grad()
        (model(x, t) - target).square().mean().backward()
        reached.append({name for name, p in model.named_parameters() if p.grad is not None and p.grad.any()})
        optimizer.step()
    everything = {name for name, _ in model.named_parameters()}
    assert reached[0] == {"conv_out.weight", "conv_out.bias"}
    inside_branches = {
        n for n in everything if any(k in n for k in (".conv1.", ".norm1.", ".norm2.", ".emb_proj.", ".qkv."))
    }
    last_layers = {n for n in everything if n.endswith((".conv2.weight", ".proj.weight"))}
    assert len(last_layers) == 15 and last_layers <= reached[1]
    assert not inside_branches & reached[1] and not any(n.startswith("time_mlp.") for n in reached[1])
    assert reached[2] == everything


def test_sr3_conditioning_channels():
    model = UNet(UNetConfig(base_channels=8, groups=4, cond_channels=1))
    x = torch.randn(2, 1, 28, 28)
    assert model(x, torch.tensor([1, 2]), cond=torch.randn(2, 1, 28, 28)).shape == x.shape
    with pytest.raises(ValueError, match="cond must be"):
        model(x, torch.tensor([1, 2]))


def test_errors_name_the_problem():
    model = UNet(UNetConfig(base_channels=8, groups=4))
    with pytest.raises(ValueError, match=r"xt must be \(B, 1, H, W\).*unsqueeze"):
        model(torch.randn(2, 28, 28), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="t has 3 entries"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="num_classes=None"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2"):
        UNetConfig(image_size=30)
    cond = UNet(UNetConfig(base_channels=8, groups=4, num_classes=10))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        cond(torch.randn(1, 1, 28, 28), torch.tensor([0]), torch.tensor([10]))


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of fn() (each storage once)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_norm_silu_matches_the_plain_composition_with_the_same_mask(p):
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 16).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    frozen = torch.nn.GroupNorm(4, 16).double().requires_grad_(False)  # e.g. gradients for x only
    x = torch.randn(3, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    keep = dropout_keep_mask(x.shape, p)
    assert p == 0 or 0 < keep.sum() < keep.numel()

    def fused(x, norm=norm):  # reseeded, so that every call (finite differences too) draws the same mask
        torch.manual_seed(7)
        return norm_silu(norm, x, dropout=p)

    def plain(x, norm=norm):
        return F.silu(F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)) * keep / (1 - p)

    torch.testing.assert_close(fused(x), plain(x))
    upstream = torch.randn_like(x)
    for model in (norm, frozen):
        inputs = [x, *(q for q in (model.weight, model.bias) if q.requires_grad)]
        grads_fused = torch.autograd.grad(fused(x, model), inputs, upstream)
        grads_plain = torch.autograd.grad(plain(x, model), inputs, upstream)
        for a, b in zip(grads_fused, grads_plain, strict=True):
            torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda x, w, b: fused(x), (x, norm.weight, norm.bias))
    with torch.no_grad():  # the path without autograd draws the same mask
        torch.testing.assert_close(fused(x), plain(x))


def test_dropout_in_norm_silu_leaves_the_mean_unchanged():
    """Monte Carlo: inverted dropout scales the kept elements by 1 / (1 - p), so E[out] = silu(norm(x))."""
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 16)
    x = torch.randn(3, 16, 5, 6, requires_grad=True)
    mean = torch.stack([norm_silu(norm, x, dropout=0.3).detach() for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, F.silu(norm(x)).detach(), atol=0.05, rtol=0.05)


def test_dropout_keep_mask_keeps_each_element_independently_with_probability_1_minus_p():
    torch.manual_seed(0)
    n = 4_000_000
    for p in (0.1, 0.5, 0.9):
        keep = dropout_keep_mask((n,), p).float()
        tol = 5 * (p * (1 - p) / n) ** 0.5  # five standard errors of a binomial proportion
        assert abs(keep.mean().item() - (1 - p)) < tol + 1 / 32768  # p is rounded to a multiple of 1/32768
        for k in range(4):  # the four 16-bit pieces of each 64-bit draw, the top one included
            assert abs(keep[k::4].mean().item() - (1 - p)) < 2 * tol + 1 / 32768
        both = (keep[:-1] * keep[1:]).mean().item()  # neighbours, mostly from the same draw
        assert abs(both - (1 - p) ** 2) < 2 * tol
    assert dropout_keep_mask((3, 5, 7), 0.0).all() and dropout_keep_mask((3, 5, 7), 0.5).shape == (3, 5, 7)
    torch.manual_seed(1)
    first = dropout_keep_mask((1000,), 0.3)
    torch.manual_seed(1)
    assert torch.equal(first, dropout_keep_mask((1000,), 0.3))  # the default generator's seed fixes it
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_keep_mask((10,), 1.0)


def test_the_unet_drops_out_only_in_training_mode():
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=0.5))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 500])
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # the output starts at zero otherwise
    model.eval()
    assert torch.equal(model(x, t), model(x, t))
    model.train()
    torch.manual_seed(0)
    a = model(x, t)
    torch.manual_seed(0)
    assert torch.equal(a, model(x, t)) and not torch.equal(a, model(x, t))


def test_norm_silu_keeps_a_third_less_for_the_backward_pass():
    torch.manual_seed(0)
    norm, conv = torch.nn.GroupNorm(8, 32), torch.nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(8, 32, 14, 14, requires_grad=True)
    fused = _saved_bytes(lambda: conv(norm_silu(norm, x)))
    plain = _saved_bytes(lambda: conv(F.silu(norm(x))))
    activation = x.numel() * 4
    assert plain >= 3 * activation  # group norm's input, silu's input, conv's input
    assert fused <= plain - activation + 4096  # silu's input is recomputed instead of kept


def test_the_unet_keeps_less_for_backward_than_diffusers_at_the_same_layout():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ours = UNet(UNetConfig())
    theirs = diffusers.UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, dropout=0.1,
    )  # fmt: skip
    assert count_parameters(ours) == count_parameters(theirs)
    x, t = torch.randn(4, 1, 28, 28), torch.randint(0, 1000, (4,))
    ratio = _saved_bytes(lambda: ours(x, t)) / _saved_bytes(lambda: theirs(x, t).sample)
    assert ratio < 0.8
