"""Lesson 03's residual-block check: the package's block passes; each usual mistake fails with its hint.

Each wrong block below differs from the package's ResBlock in one way a learner might write it.
"""

import pytest
import torch.nn.functional as F
from torch import nn

from ddpm_lessons import checks
from ddpm_lessons.checks import CheckFailed
from ddpm_lessons.unet import ResBlock


class Plain(nn.Module):
    """The block as a learner writes it, with nn.Dropout; ``variant`` names one deliberate mistake."""

    variant = "right"

    def __init__(self, in_ch, out_ch, emb_dim, dropout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb):
        v = self.variant
        emb_in = emb if v == "emb_no_silu" else F.silu(emb, inplace=(v == "silu_in_place"))
        shift = self.emb_proj(emb_in)
        shift = shift if v == "no_reshape" else shift[:, :, None, None]
        h = self.conv1(F.silu(self.norm1(x)))
        if v not in ("late_emb", "no_emb"):
            h = h + shift
        a = F.silu(self.norm2(h))
        if v == "dropout_always":
            a = F.dropout(a, self.dropout.p, training=True)
        elif v not in ("no_dropout", "dropout_after_conv2"):
            a = self.dropout(a)
        out = self.conv2(a)
        if v == "dropout_after_conv2":
            out = self.dropout(out)
        if v == "late_emb":
            out = out + shift
        return out if v == "no_skip" else self.skip(x) + out


def variant(name, base=Plain):
    return type(name, (base,), {"variant": name})


def test_the_package_block_and_a_plain_block_pass(capsys):
    for block in (ResBlock, Plain):
        checks.check_res_block(block)
        out = capsys.readouterr().out
        assert out.startswith("PASS res block") and out.count("\n") == 1


@pytest.mark.parametrize(
    "name, hint",
    [
        ("no_skip", "skip connection is missing"),
        ("late_emb", "added at the end"),
        ("no_emb", "time embedding is not used"),
        ("emb_no_silu", "SiLU before its linear layer"),
        ("no_reshape", "two trailing axes"),
        ("silu_in_place", "changed its input `emb` in place"),
        ("dropout_always", "dropout acts in eval mode"),
        ("no_dropout", "nothing dropped"),
        ("dropout_after_conv2", "nothing dropped"),
    ],
)
def test_a_usual_mistake_gets_its_hint(name, hint):
    with pytest.raises(CheckFailed, match=hint):
        checks.check_res_block(variant(name))


class SkipAlwaysIdentity(Plain):
    def __init__(self, in_ch, out_ch, *rest):
        super().__init__(in_ch, out_ch, *rest)
        self.skip = nn.Identity()


class SkipAlwaysConv(Plain):
    def __init__(self, in_ch, out_ch, *rest):
        super().__init__(in_ch, out_ch, *rest)
        self.skip = nn.Conv2d(in_ch, out_ch, 1)


class Norm1OnOutputChannels(Plain):
    def __init__(self, in_ch, out_ch, emb_dim, dropout, groups):
        super().__init__(in_ch, out_ch, emb_dim, dropout, groups)
        self.norm1 = nn.GroupNorm(groups, out_ch)


class DropoutBeforeNorm(Plain):
    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb_proj(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(self.dropout(h))))


class SiluBeforeNorm(Plain):
    def forward(self, x, emb):
        h = self.conv1(self.norm1(F.silu(x))) + self.emb_proj(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(self.dropout(self.norm2(F.silu(h))))


@pytest.mark.parametrize(
    "block, hint",
    [
        (SkipAlwaysIdentity, "the skip is a 1x1 convolution"),
        (SkipAlwaysConv, "the skip is nn.Identity"),
        (Norm1OnOutputChannels, "wrong size.*norm1"),
        (DropoutBeforeNorm, "dropout acts after norm2 and SiLU"),
        (SiluBeforeNorm, "SiLU comes after GroupNorm"),
    ],
)
def test_a_wrongly_built_block_gets_its_hint(block, hint):
    with pytest.raises(CheckFailed, match=hint):
        checks.check_res_block(block)


def test_a_block_whose_output_is_float64_fails_on_its_dtype():
    class Float64(Plain):
        def forward(self, x, emb):
            return super().forward(x, emb).double()

    with pytest.raises(CheckFailed, match="the dtype is torch.float64"):
        checks.check_res_block(Float64)
