"""The adapters of benchmarks/other_recipes.py (the recipes the side-by-side benchmark trains beside the project's):
their steps against the package's own formulas, and each recipe's training step and sampler run end to end, small."""

import sys
from pathlib import Path

import pytest
import torch

from ddpm_lessons.forward import p_mean_from_eps
from ddpm_lessons.schedules import NoiseSchedule

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
other_recipes = pytest.importorskip("other_recipes")


def test_pearce_step_is_the_ddpm_posterior_mean_plus_sqrt_beta_noise():
    """With z = 0 one ancestral step is Eq. (11)'s mean on the same betas; z adds sqrt(beta_i) z (sigma^2 = beta)."""
    betas = other_recipes.pearce_betas(400)
    schedule = NoiseSchedule.from_betas(betas)  # alpha_bar_i = alpha_0 ... alpha_i, as the recipe's
    x, eps, z = torch.randn(3, 2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for i in (1, 17, 400):
        mean = p_mean_from_eps(schedule, x, torch.full((2,), i), eps)
        torch.testing.assert_close(other_recipes.pearce_step(x, eps, i, betas, 0.0), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(other_recipes.pearce_step(x, eps, i, betas, z), mean + betas[i].sqrt() * z,
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_pearce_betas_match_the_published_linear_range():
    betas = other_recipes.pearce_betas(400)
    assert len(betas) == 401
    torch.testing.assert_close(betas[[0, -1]], torch.tensor([1e-4, 0.02]))
    torch.testing.assert_close(betas.diff(), torch.full((400,), (0.02 - 1e-4) / 400), rtol=1e-4, atol=1e-9)


def test_context_unet_uses_the_class_and_ignores_it_when_dropped():
    torch.manual_seed(0)
    net = other_recipes.ContextUnet(n_feat=16).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.3, 0.3])
    x = torch.cat([x[:1], x[:1]])
    with torch.no_grad():
        given = net(x, t, torch.tensor([3, 7]), torch.ones(2, dtype=torch.long))
        dropped = net(x, t, torch.tensor([3, 7]), torch.zeros(2, dtype=torch.long))
    assert given.shape == (2, 1, 28, 28)
    assert not torch.allclose(given[0], given[1])  # different classes, different predictions
    torch.testing.assert_close(dropped[0], dropped[1])  # no class: the label makes no difference


@pytest.mark.parametrize("name", ["teapearce", "hf-course"])
def test_each_recipe_trains_and_samples_in_range(name):
    if name == "hf-course":
        pytest.importorskip("diffusers")
    small = {"teapearce": {"n_feat": 16, "T": 4}, "hf-course": {"T": 4}}[name]
    recipe = other_recipes.BUILD[name](seed=0, **small)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=gen) * 2 - 1
    losses = [recipe.train_step(x, torch.tensor([0, 1, 2, 3]), seen) for seen in (0, 4)]
    assert all(torch.isfinite(torch.tensor(losses)))
    out = recipe.sample(torch.tensor([0, 1]), recipe.guidance[-1], torch.Generator().manual_seed(1))
    again = recipe.sample(torch.tensor([0, 1]), recipe.guidance[-1], torch.Generator().manual_seed(1))
    assert out.shape == (2, 1, 28, 28) and out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(out, again)  # same generator, same samples
