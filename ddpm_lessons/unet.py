"""A U-Net noise predictor eps_theta(x_t, t[, y]) written from scratch, after Ho et al. 2020, Appendix B.

The pieces, in the order lesson 03 builds them: a sinusoidal time embedding (the Transformer's
position encoding applied to t), residual blocks whose activations are shifted by the time (and
class) embedding, GroupNorm, self-attention at chosen resolutions, and a down path whose outputs
are concatenated into the up path (the skips). The network knows nothing of schedules or training.

The condition ``y`` (see ``eps_model``): class ids 0..num_classes-1, or a prompt's token ids (B, L) with
``text_conditioning``; NO_LABEL (-1) means "no condition" and selects the extra embedding used for
classifier-free guidance (Ho & Salimans 2022). An image condition enters as extra input channels
(``cond_channels``, SR3-style).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.eps_model import NO_LABEL
from ddpm_lessons.fused import inverted_dropout, norm_silu
from ddpm_lessons.text import TextEncoder


@dataclass
class UNetConfig:
    """Shape of the network. The defaults fit 28x28 MNIST on a laptop CPU: about 1.1M parameters."""

    image_size: int = 28  # height = width of x_t, divisible by 2 ** (len(channel_mults) - 1)
    in_channels: int = 1  # 1 for grey digits, 3 for RGB
    out_channels: int | None = None  # channels of eps; None means in_channels
    cond_channels: int = 0  # extra input channels concatenated to x_t (SR3-style conditioning)
    base_channels: int = 32  # channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2, 2)  # per resolution: 28 -> 14 -> 7 for MNIST
    num_res_blocks: int = 1  # residual blocks per resolution on the way down (Ho et al.: 2)
    attention_resolutions: tuple[int, ...] = (7,)  # side lengths that get self-attention
    attention_heads: int = 1  # Ho et al. use one head
    dropout: float = 0.1  # inside residual blocks (Ho et al.: 0.1 on CIFAR-10)
    scale_shift: bool = False  # the embedding scales and shifts each block's second GroupNorm (AdaGN) instead of adding
    zero_init_residual: bool = False  # each block's last convolution and each attention's output start at zero
    num_classes: int | None = None  # K adds a class embedding with K + 1 rows (the last: no label)
    text_conditioning: bool = False  # y is a prompt's token ids (B, L) read by a small text encoder (lesson 08)
    groups: int = 8  # GroupNorm groups; must divide every channel count

    def __post_init__(self) -> None:
        if self.num_classes and self.text_conditioning:
            raise ValueError("choose class labels (num_classes) or text prompts (text_conditioning), not both")
        self.channel_mults = tuple(self.channel_mults)
        self.attention_resolutions = tuple(self.attention_resolutions)
        levels = len(self.channel_mults)
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size={self.image_size} must be divisible by 2**{levels - 1} for "
                f"{levels} resolutions; change image_size or channel_mults"
            )
        for mult in self.channel_mults:
            if (self.base_channels * mult) % self.groups:
                raise ValueError(
                    f"GroupNorm needs channels divisible by groups={self.groups}, "
                    f"but base_channels * {mult} = {self.base_channels * mult}"
                )

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, as in Ho et al. 2020 (Sec. 4, after Vaswani et al.).

        emb[i] = sin(t * w_i),  emb[half + i] = cos(t * w_i),  w_i = max_period ** (-i / (half - 1))

    Sines fill the first half and cosines the second. t: (B,) -> (B, dim).
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"timestep_embedding needs an even dim >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / (half - 1))  # (half,)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, dim)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the projected embedding, GroupNorm-SiLU-dropout-conv, plus a skip.

    With ``scale_shift`` the projected embedding is a pair (s, b) per channel that modulates the second
    GroupNorm's output instead, AdaGN(h, emb) = (1 + s) GroupNorm(h) + b (Dhariwal & Nichol 2021, "Diffusion
    models beat GANs on image synthesis", Sec. 3, y_s GroupNorm(h) + y_b, written with y_s = 1 + s so that s = 0 leaves
    the normalised features as they are): the time and the class then multiply the block's features, where the
    addition only moves them.

    ``self.dropout`` holds the probability and follows ``train()`` / ``eval()`` like any nn.Dropout; the
    dropout itself happens inside ``norm_silu`` (with AdaGN, ``inverted_dropout``), which draw their mask more
    cheaply.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int, scale_shift: bool = False):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(norm_silu(self.norm1, x))  # conv1(silu(norm1(x))): (B, out_ch, H, W)
        projected = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch or 2 out_ch, 1, 1)
        p = self.dropout.p if self.training else 0.0
        if self.scale_shift:
            scale, shift = projected.chunk(2, dim=1)
            h = inverted_dropout(F.silu(self.norm2(h) * (1 + scale) + shift), p)  # AdaGN (Dhariwal & Nichol, Sec. 3)
        else:
            h = norm_silu(self.norm2, h + projected, dropout=p)  # time (and class) shift, per channel
        return self.skip(x) + self.conv2(h)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, Eq. 1), by PyTorch's fused kernel; q, k, v (B, heads, L, d).
    bfloat16 on a CPU (as under the CPU autocast of ``--precision bf16``) computes it in float32 and returns
    bfloat16: on the development CPU (AVX512-BF16) PyTorch's bfloat16 kernel is the slower one, forward and backward
    3.2x as long at the digits recipe's 7x7 with one head, 1.2-1.6x at 14x14 (benchmarks/README.md, "Where a step's
    time goes"); not measured on other CPUs or longer sequences."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: channels={channels} must be divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # A 1x1 convolution is one linear map applied at every position, so it is applied here to the
        # (B, HW, C) matrix of positions. q, k and v then come out as (B, heads, HW, head_dim) with head_dim
        # contiguous in memory, the layout PyTorch's fused CPU attention kernel takes; from the (B, C, H, W)
        # layout it falls back to a kernel that is 2.25x slower at 14x14 with 8 heads (benchmarks/README.md).
        positions = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = F.linear(positions, self.qkv.weight.flatten(1), self.qkv.bias)  # (B, HW, 3C)
        q, k, v = qkv.view(B, H * W, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v)  # softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, Eq. 1)
        out = F.linear(out.transpose(1, 2).reshape(B, H * W, C), self.proj.weight.flatten(1), self.proj.bias)
        return x + out.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H, W) -> (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, C, 2H, 2W)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y][, cond]): predicts the noise in x_t. Input and output (B, C, H, W)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        ch, groups = cfg.base_channels, cfg.groups
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.text_encoder = TextEncoder(emb_dim) if cfg.text_conditioning else None
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)

        def block(in_ch: int, out_ch: int, size: int) -> nn.ModuleList:
            layers = [ResBlock(in_ch, out_ch, emb_dim, cfg.dropout, groups, cfg.scale_shift)]
            if size in cfg.attention_resolutions:
                layers.append(SelfAttention(out_ch, cfg.attention_heads, groups))
            return nn.ModuleList(layers)

        # Down path: remember every output's channels, they come back as skips on the way up.
        self.down, skip_channels, size, cur = nn.ModuleList(), [ch], cfg.image_size, ch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(cur, ch * mult, size))
                cur = ch * mult
                skip_channels.append(cur)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                skip_channels.append(cur)
                size //= 2
        self.mid = nn.ModuleList(
            [
                ResBlock(cur, cur, emb_dim, cfg.dropout, groups, cfg.scale_shift),
                SelfAttention(cur, cfg.attention_heads, groups),
                ResBlock(cur, cur, emb_dim, cfg.dropout, groups, cfg.scale_shift),
            ]
        )
        # Up path: one more block per level than on the way down, each eating one skip.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(block(cur + skip_channels.pop(), ch * mult, size))
                cur = ch * mult
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(cur)]))
                size *= 2
        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, cfg.out_channels or cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start as "predict zero noise": a stable first step
        nn.init.zeros_(self.conv_out.bias)
        if cfg.zero_init_residual:
            self._zero_residual_branches()

    def _zero_residual_branches(self) -> None:
        """Start every residual block as its skip path and every attention layer as the identity: zero the last layer
        of each branch, as the code released with Ho et al. 2020 initialises its blocks' ``conv2`` and its attention's
        ``proj_out`` (``init_scale=0.``). The layers before it in a branch get gradients once it has moved, from the
        next update on. Done after every layer drew its default weights, so that the others draw the same random
        numbers with the option as without it."""
        last_layers = [m.conv2 for m in self.modules() if isinstance(m, ResBlock)]
        last_layers += [m.proj for m in self.modules() if isinstance(m, SelfAttention)]
        for layer in last_layers:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    def _check_inputs(self, xt, t, y, cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        if xt.ndim != 4 or xt.shape[1] != cfg.in_channels:
            raise ValueError(
                f"UNet: xt must be (B, {cfg.in_channels}, H, W), got {tuple(xt.shape)}; "
                "add a channel axis with x.unsqueeze(1) for grey images"
            )
        factor = 2 ** (len(cfg.channel_mults) - 1)
        if xt.shape[2] % factor or xt.shape[3] % factor:
            raise ValueError(f"UNet: height and width must be divisible by {factor}, got {tuple(xt.shape[2:])}")
        batch = xt.shape[0]
        t = torch.as_tensor(t, device=xt.device).reshape(-1)
        if len(t) == 1:
            t = t.expand(batch)
        if len(t) != batch:
            raise ValueError(f"UNet: t has {len(t)} entries but xt has batch {batch}")
        if y is not None and self.text_encoder is not None:
            y = torch.as_tensor(y, device=xt.device).long()
            if y.ndim != 2 or y.shape[1] != self.text_encoder.length or len(y) not in (1, batch):
                raise ValueError(
                    f"UNet: a text-conditioned model takes y = token ids of shape (B, {self.text_encoder.length}), "
                    f"got {tuple(y.shape)}; make them with ddpm_lessons.text.tokenize(prompts)"
                )
            vocab = self.text_encoder.words.num_embeddings
            if len(y) and (int(y.min()) < NO_LABEL or int(y.max()) >= vocab):
                raise ValueError(f"UNet: token ids must lie in 0..{vocab - 1} (or {NO_LABEL}: no prompt), "
                                 f"got {int(y.min())}..{int(y.max())}; make them with text.tokenize")  # fmt: skip
            y = y.expand(batch, -1)
        elif y is not None:
            if self.label_emb is None:
                raise ValueError("UNet: labels y were given but the model has num_classes=None (unconditional)")
            y = torch.as_tensor(y, device=xt.device).reshape(-1).expand(batch).long()
            if int(y.min()) < NO_LABEL or int(y.max()) >= cfg.num_classes:
                raise ValueError(
                    f"UNet: labels must lie in 0..{cfg.num_classes - 1} (or {NO_LABEL} for no label), "
                    f"got values in {int(y.min())}..{int(y.max())}"
                )
        if cfg.cond_channels:
            if cond is None or cond.shape != (batch, cfg.cond_channels, *xt.shape[2:]):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"UNet: cond must be (B, {cfg.cond_channels}, H, W) matching xt {tuple(xt.shape)}, got {got}"
                )
        elif cond is not None:
            raise ValueError("UNet: cond was given but the model has cond_channels=0")
        return t, y

    def forward(
        self,
        xt: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """xt: (B, C, H, W); t: (B,) ints in 0..T-1; y: (B,) class ids or -1; cond: (B, C_cond, H, W)."""
        t, y = self._check_inputs(xt, t, y, cond)
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))  # (B, 4 ch)
        if self.label_emb is not None:
            if y is None:
                y = torch.full_like(t, NO_LABEL)
            y = torch.where(y == NO_LABEL, self.config.num_classes, y)  # -1 -> the "no label" row
            emb = emb + self.label_emb(y)
        if self.text_encoder is not None:
            if y is None:
                y = torch.full((len(t), self.text_encoder.length), NO_LABEL, device=t.device)  # no prompt
            emb = emb + self.text_encoder(y)  # the prompt, pooled to one vector (B, 4 ch)

        h = self.conv_in(xt if cond is None else torch.cat([xt, cond], dim=1))
        skips = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)  # the skip connection
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(norm_silu(self.norm_out, h))  # (B, C, H, W)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
