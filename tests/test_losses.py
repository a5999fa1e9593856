import math

import pytest
import torch
from torch import nn

from cyclegan.models.losses import discriminator_loss, gan_loss, gradient_penalty

# Scores as a PatchGAN would give them: (N=2, 1, 1, 2).
P = torch.tensor([0.5, -1.0, 2.0, 0.0]).view(2, 1, 1, 2)


def _softplus(x):  # -log sigmoid(-x) = log(1 + e^x)
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    "mode, real, fake, gen",
    [
        # lsgan: mean (p-1)^2 = (0.25+4+1+1)/4; mean p^2 = (0.25+1+4+0)/4
        ("lsgan", 1.5625, 1.3125, 1.5625),
        # vanilla: -log s(p) = softplus(-p); -log(1-s(p)) = softplus(p)
        ("vanilla", sum(_softplus(-p) for p in (0.5, -1, 2, 0)) / 4, sum(_softplus(p) for p in (0.5, -1, 2, 0)) / 4,
         sum(_softplus(-p) for p in (0.5, -1, 2, 0)) / 4),
        # hinge: mean relu(1-p) = (0.5+2+0+1)/4; mean relu(1+p) = (1.5+0+3+1)/4; G: -mean p
        ("hinge", 0.875, 1.375, -0.375),
        ("wgangp", -0.375, 0.375, -0.375),
    ],
)
def test_gan_losses_against_hand_values(mode, real, fake, gen):
    assert gan_loss(P, True, mode=mode, for_discriminator=True).item() == pytest.approx(real, abs=1e-6)
    assert gan_loss(P, False, mode=mode, for_discriminator=True).item() == pytest.approx(fake, abs=1e-6)
    assert gan_loss(P, True, mode=mode).item() == pytest.approx(gen, abs=1e-6)


class _LinearCritic(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_of_linear_critic_is_norm_of_weights():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)
    critic = _LinearCritic(w)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    # create_graph: the penalty trains the critic; d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    (grad,) = torch.autograd.grad(gp, critic.w)
    torch.testing.assert_close(grad, 2 * (w.norm() - 1) * w / w.norm(), rtol=1e-4, atol=1e-6)


def test_discriminator_loss_halves_real_plus_fake_and_adds_penalty_for_wgangp():
    torch.manual_seed(0)
    d = nn.Conv2d(3, 1, 1)
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    out = discriminator_loss(d, real, fake, mode="lsgan")
    expected = 0.5 * (((d(real) - 1) ** 2).mean() + (d(fake) ** 2).mean())
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.score_real.item() == pytest.approx(d(real).mean().item(), rel=1e-6)

    critic = _LinearCritic(torch.randn(3, 4, 4))
    wgan = discriminator_loss(critic, real, fake, mode="wgangp", lambda_gp=10.0)
    base = 0.5 * (-critic(real).mean() + critic(fake).mean())
    penalty = (critic.w.norm() - 1) ** 2
    assert wgan.loss.item() == pytest.approx((base + 10.0 * penalty).item(), rel=1e-5)
