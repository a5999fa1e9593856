"""Method 1: the one-generator baseline, G_AB against D_B with the adversarial loss only.

It is CycleGAN without G_BA, D_A and the cycle and identity terms: same networks, pool,
optimizer and schedule, so the two compare. Nothing ties G_AB(a) to a, so it learns
to produce plausible B images that may have lost the content of the input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cyclegan.models.losses import discriminator_loss, gan_loss
from cyclegan.models.networks import (
    build_discriminator, build_generator, init_weights, samples_independent,
)
from cyclegan.training.base import D_ACCURACY, TranslationModel, discriminator_logs


class Method1(TranslationModel):
    """L_G = L_GAN(G_AB, D_B) [+ lambda_b * lambda_identity * ||G_AB(b) - b||_1];
    L_D = 0.5 * (L(D_B(b), 1) + L(D_B(pool(G_AB(a))), 0)).

    Args:
        lambda_b, lambda_identity: the identity term's weight is their product, as for
            :class:`cyclegan.CycleGAN`'s B side. ``lambda_identity`` is 0 by default (the GAN
            loss alone, as published); set it to CycleGAN's value to separate what the cycle
            loss adds from what the identity loss adds.
        **kwargs: what every model has (architectures, optimizer, schedule, pool, ...): see
            :class:`~cyclegan.training.base.TranslationModel`.
    """

    kind = "method1"
    directions = {"a2b": "G_AB"}

    def __init__(self, *, lambda_b: float = 10.0, lambda_identity: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hp, g, d = self.hparams, self.generator_config, self.discriminator_config
        self.G_AB = init_weights(build_generator(g, input_nc=hp.input_nc, output_nc=hp.output_nc), gain=hp.init_gain)
        self.D_B = init_weights(build_discriminator(d, input_nc=hp.output_nc), gain=hp.init_gain)
        self.setup_training(generators=[self.G_AB], discriminators=[self.D_B], pools=("b",))
        self._d_batchable = samples_independent(self.D_B)
        self.pool_b = self.pools["b"]  # fakes of B, for D_B

    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The weighted terms of L_G, and the fake G(a) that D_B judges next."""
        fake_b = self.G_AB(real_a)  # G(a)
        terms = {"loss_g_adv_ab": gan_loss(self.D_B(self.augment(fake_b)), True, mode=self.hparams.gan_mode)}
        if self.hparams.lambda_identity > 0:  # G fed a B image should leave it unchanged
            terms["loss_idt_b"] = F.l1_loss(self.G_AB(real_b), real_b) * self.hparams.lambda_b * self.hparams.lambda_identity
        return terms, fake_b

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        real_a, real_b = batch["A"], batch["B"]  # (N, C, H, W) each, in [-1, 1]
        opt_g, opt_d = self.optimizers()

        with self.toggled_optimizer(opt_g):  # D_B frozen
            terms, fake_b = self.generator_losses(real_a, real_b)
            loss_g = sum(terms.values())
            if not self.guard.finite(self, terms, opt_g):
                return None
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()

        with self.toggled_optimizer(opt_d):
            fakes = self.pool_b.query(fake_b)  # this iteration's or older ones
            d_b = discriminator_loss(self.D_B, self.augment(real_b), self.augment(fakes),
                                     mode=self.hparams.gan_mode, lambda_gp=self.hparams.lambda_gp,
                                     together=self._d_batchable)
            if self.guard.finite(self, {"loss_d_b": d_b.loss}, opt_d):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_b.loss)
                self.step_discriminators(opt_d)  # not counted: global_step counts iterations
                self.guard.step_done()

        if self.logs_due():
            logs = {"train/loss_g": loss_g.detach(), **{f"train/{k}": v.detach() for k, v in terms.items()},
                    **discriminator_logs("b", d_b)}
            self.log_training_step(logs, opt_g=opt_g, opt_d=opt_d, loss_g=loss_g.detach(), loss_d=d_b.loss.detach(),
                                   batch_size=real_a.shape[0])
        return {D_ACCURACY: {"D_B": d_b.accuracy}}  # for the TrainingHealth callback

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        fake_b = self.G_AB(batch["A"])
        self.log("val/loss_g_adv_ab", gan_loss(self.D_B(fake_b), True, mode=self.hparams.gan_mode),
                 on_epoch=True, batch_size=batch["A"].shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_columns(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sample grid's columns by title, in order: a | G(a), each (N, C, H, W)."""
        return {"real A": real_a, "A->B": self.G_AB(real_a)}
