"""GAN objectives and the gradient penalty.

Discriminator outputs are unnormalised scores (logits); each loss decides how to read them.

========  ============================================  ============================
mode      discriminator loss (real r, fake f)           generator loss (fake f)
========  ============================================  ============================
lsgan     (D(r) - 1)^2 + D(f)^2  (Mao et al. 2017)      (D(f) - 1)^2
vanilla   -log s(D(r)) - log(1 - s(D(f)))  (minimax)    -log s(D(f))  (non-saturating)
hinge     max(0, 1 - D(r)) + max(0, 1 + D(f))           -D(f)
wgangp    -D(r) + D(f) + lambda_gp * GP  (Gulrajani)    -D(f)
========  ============================================  ============================

All terms are means over every patch score and sample. The CycleGAN discriminator loss
halves the sum of its real and fake terms (see :func:`discriminator_loss`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.models.networks import call_batched

GanMode = Literal["lsgan", "vanilla", "hinge", "wgangp"]


def gan_loss(prediction: torch.Tensor, target_is_real: bool, *, mode: GanMode, for_discriminator: bool = False) -> torch.Tensor:
    """Loss of discriminator scores ``prediction`` against the label real/fake.

    The generator calls it with ``target_is_real=True`` on its fakes. ``for_discriminator``
    matters only for hinge, whose discriminator side is clipped and generator side is not.
    """
    if mode == "lsgan":
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return F.mse_loss(prediction, target)
    if mode == "vanilla":
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return F.binary_cross_entropy_with_logits(prediction, target)
    if mode == "hinge" and for_discriminator:
        return F.relu(1.0 - prediction).mean() if target_is_real else F.relu(1.0 + prediction).mean()
    # wgangp (both sides) and the hinge generator: push real scores up, fake scores down.
    return -prediction.mean() if target_is_real else prediction.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x)||_2 - 1)^2] at random interpolates x of real and fake.

    One interpolation weight per sample; ``create_graph`` so the penalty trains D.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(x)
    (grad,) = torch.autograd.grad(scores, x, grad_outputs=torch.ones_like(scores), create_graph=True)
    grad_norm = grad.flatten(1).norm(2, dim=1)  # (N,)
    return ((grad_norm - 1.0) ** 2).mean()


class DiscriminatorLoss(NamedTuple):
    loss: torch.Tensor
    score_real: torch.Tensor  # mean D output on real images, for logging
    score_fake: torch.Tensor  # mean D output on (pooled) fakes
    accuracy: torch.Tensor  # share of patches D classifies right (real above, fake below its threshold)


# The score that separates "real" from "fake": LSGAN regresses to 1 and 0, the others are logits or critics.
_DECISION = {"lsgan": 0.5, "vanilla": 0.0, "hinge": 0.0, "wgangp": 0.0}


def discriminator_loss(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, mode: GanMode, lambda_gp: float = 10.0,
    together: bool = False,
) -> DiscriminatorLoss:
    """L_D = 0.5 * (L(D(real), real) + L(D(fake), fake)) [+ lambda_gp * GP for wgangp].

    ``fake`` must already be detached from the generator (it usually comes from the pool).
    Halving slows D relative to G, as in the published code. ``together`` scores real and
    fake in one call, which is the same computation when D has no batch norm.
    """
    pred_real, pred_fake = call_batched(discriminator, real, fake, together=together)
    loss = 0.5 * (
        gan_loss(pred_real, True, mode=mode, for_discriminator=True)
        + gan_loss(pred_fake, False, mode=mode, for_discriminator=True)
    )
    if mode == "wgangp":
        loss = loss + lambda_gp * gradient_penalty(discriminator, real, fake)
    pred_real, pred_fake = pred_real.detach(), pred_fake.detach()
    t = _DECISION[mode]
    accuracy = 0.5 * ((pred_real > t).float().mean() + (pred_fake < t).float().mean())
    return DiscriminatorLoss(loss, pred_real.mean(), pred_fake.mean(), accuracy)
