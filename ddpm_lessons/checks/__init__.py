"""Checks for the lessons' exercises: run the learner's function on fixed inputs, compare it with the
package, and when it is wrong, say which usual mistake it looks like.

Each ``check_*`` prints one deterministic line starting with "PASS" (what nbval compares) or raises
:class:`CheckFailed` with a hint. The hints come from computing the known-wrong variants (a variance
where the standard deviation belongs, an off-by-one in t, swapped halves, ...) and seeing which
one the learner's output matches. ``foundations`` holds lessons 00-03, ``sampling`` lessons 04-06,
``conditioning`` lessons 07-09, ``score`` lesson 10, ``flow`` lesson 11.
"""

from ddpm_lessons.checks.conditioning import (
    check_grad_accumulation,
    check_latent_loss,
    check_repaint_merge,
    check_sr_loss,
)
from ddpm_lessons.checks.core import CheckFailed
from ddpm_lessons.checks.flow import check_euler_step, check_flow_matching_loss
from ddpm_lessons.checks.foundations import (
    check_alpha_bar,
    check_normal_kl,
    check_posterior,
    check_q_sample,
    check_res_block,
    check_scaling,
    check_timestep_embedding,
)
from ddpm_lessons.checks.sampling import check_ddim_step, check_guided_eps, check_p_sample, check_training_loss
from ddpm_lessons.checks.score import check_dpmpp_2m_step, check_score_from_eps

__all__ = [
    "CheckFailed",
    "check_alpha_bar",
    "check_ddim_step",
    "check_dpmpp_2m_step",
    "check_euler_step",
    "check_flow_matching_loss",
    "check_grad_accumulation",
    "check_guided_eps",
    "check_latent_loss",
    "check_normal_kl",
    "check_p_sample",
    "check_posterior",
    "check_q_sample",
    "check_repaint_merge",
    "check_res_block",
    "check_scaling",
    "check_score_from_eps",
    "check_sr_loss",
    "check_timestep_embedding",
    "check_training_loss",
]
