"""CycleGAN (Zhu, Park, Isola, Efros 2017): unpaired translation with cycle consistency.

Names in code vs the paper, for domains A (X) and B (Y):
    G_AB = G : X -> Y        G_BA = F : Y -> X
    D_A  = D_X (judges A)    D_B  = D_Y (judges B)
The published code calls these netG_A, netG_B, netD_B, netD_A respectively (its D_A
judges domain B); here each discriminator is named after the domain it judges.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from cyclegan.models.losses import discriminator_loss, gan_loss
from cyclegan.models.networks import (
    build_discriminator, build_generator, call_batched, init_weights,
    samples_independent,
)
from cyclegan.training.base import D_ACCURACY, TranslationModel, discriminator_logs


class GeneratorLosses(NamedTuple):
    """What the generator pass gives: every weighted term of L_G, and the fakes the discriminators judge next."""

    losses: dict[str, torch.Tensor]  # loss_g_adv_ab, loss_g_adv_ba, loss_cycle_a/b, [loss_idt_a/b], their sum loss_g
    fake_a: torch.Tensor  # F(b), (N, C_a, H, W), for D_A
    fake_b: torch.Tensor  # G(a), (N, C_b, H, W), for D_B


class CycleGAN(TranslationModel):
    """Two generators and two discriminators trained with adversarial, cycle and identity losses.

    Generator objective (Eqn. 3 of the paper, plus the identity term of Sec. 5.2):
        L_G = L_GAN(G, D_B) + L_GAN(F, D_A)
            + lambda_a * ||F(G(a)) - a||_1 + lambda_b * ||G(F(b)) - b||_1
            + lambda_identity * (lambda_a * ||F(a) - a||_1 + lambda_b * ||G(b) - b||_1)
    Discriminators: L_D = 0.5 * (L(D(real), 1) + L(D(pool(fake)), 0)) each.
    With ``diff_augment`` every D(x) in both objectives is D(T(x)), T a fresh random transformation.

    Args:
        lambda_a, lambda_b: cycle-consistency weights for A->B->A and B->A->B.
        lambda_identity: identity weight relative to the cycle weight; 0 disables it
            (and needs no second generator pass). Requires input_nc == output_nc.
        start_epoch: the LR schedule's epoch at this run's first epoch: a run carried on from
            the authors' code after that many epochs (``cyclegan fit --init_from DIR --init_epoch N``).
        **kwargs: what every model has (architectures, optimizer, schedule, pool, ...): see
            :class:`~cyclegan.training.base.TranslationModel`. Both generators share one
            architecture, and both discriminators another.
    """

    kind = "cyclegan"
    directions = {"a2b": "G_AB", "b2a": "G_BA"}

    def __init__(self, *, lambda_a: float = 10.0, lambda_b: float = 10.0, lambda_identity: float = 0.5,
                 start_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hp, g, d = self.hparams, self.generator_config, self.discriminator_config
        if lambda_identity > 0 and hp.input_nc != hp.output_nc:
            raise ValueError(f"the identity loss needs input_nc == output_nc (got {hp.input_nc}, {hp.output_nc}); "
                             "set lambda_identity: 0")
        self.G_AB = init_weights(build_generator(g, input_nc=hp.input_nc, output_nc=hp.output_nc), gain=hp.init_gain)
        self.G_BA = init_weights(build_generator(g, input_nc=hp.output_nc, output_nc=hp.input_nc), gain=hp.init_gain)
        self.D_A = init_weights(build_discriminator(d, input_nc=hp.input_nc), gain=hp.init_gain)
        self.D_B = init_weights(build_discriminator(d, input_nc=hp.output_nc), gain=hp.init_gain)
        self.setup_training(generators=[self.G_AB, self.G_BA], discriminators=[self.D_A, self.D_B], pools=("a", "b"))
        self._g_batchable = samples_independent(self.G_AB)
        self._d_batchable = samples_independent(self.D_A)
        self.pool_a, self.pool_b = self.pools["a"], self.pools["b"]  # fakes of A, for D_A; fakes of B, for D_B

    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor) -> GeneratorLosses:
        """Every term of L_G, weighted, plus their sum under ``loss_g``; also the fakes for D.

        The six generator passes run as three calls when the generators have no batch
        norm (each sample is then computed independently, so batching changes nothing).
        """
        hp = self.hparams
        identity = hp.lambda_identity > 0
        together = self._g_batchable
        if identity:
            fake_b, idt_b = call_batched(self.G_AB, real_a, real_b, together=together)  # G(a), G(b)
            rec_a, fake_a, idt_a = call_batched(self.G_BA, fake_b, real_b, real_a, together=together)  # F(G(a)), F(b), F(a)
        else:
            fake_b = self.G_AB(real_a)  # G(a)
            rec_a, fake_a = call_batched(self.G_BA, fake_b, real_b, together=together)  # F(G(a)), F(b)
        rec_b = self.G_AB(fake_a)  # G(F(b))
        out = {
            "loss_g_adv_ab": gan_loss(self.D_B(self.augment(fake_b)), True, mode=hp.gan_mode),
            "loss_g_adv_ba": gan_loss(self.D_A(self.augment(fake_a)), True, mode=hp.gan_mode),
            "loss_cycle_a": F.l1_loss(rec_a, real_a) * hp.lambda_a,
            "loss_cycle_b": F.l1_loss(rec_b, real_b) * hp.lambda_b,
        }
        if identity:
            # A generator fed an image of its target domain should leave it unchanged.
            out["loss_idt_a"] = F.l1_loss(idt_a, real_a) * hp.lambda_a * hp.lambda_identity
            out["loss_idt_b"] = F.l1_loss(idt_b, real_b) * hp.lambda_b * hp.lambda_identity
        out["loss_g"] = sum(out.values())
        return GeneratorLosses(out, fake_a=fake_a, fake_b=fake_b)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        real_a, real_b = batch["A"], batch["B"]  # (N, C, H, W) each, in [-1, 1]
        opt_g, opt_d = self.optimizers()

        # 1. Generators, with D_A and D_B frozen (toggling drops them from autograd).
        with self.toggled_optimizer(opt_g):
            g = self.generator_losses(real_a, real_b)
            if not self.guard.finite(self, g.losses, opt_g):
                return None  # fakes from a broken forward pass would poison D and the pools too
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g.losses["loss_g"])
            opt_g.step()

        # 2. Discriminators, on real images and on fakes drawn from the history pools.
        with self.toggled_optimizer(opt_d):
            aug = self.augment
            d_a = discriminator_loss(self.D_A, aug(real_a), aug(self.pool_a.query(g.fake_a)),
                                     mode=self.hparams.gan_mode, lambda_gp=self.hparams.lambda_gp, together=self._d_batchable)
            d_b = discriminator_loss(self.D_B, aug(real_b), aug(self.pool_b.query(g.fake_b)),
                                     mode=self.hparams.gan_mode, lambda_gp=self.hparams.lambda_gp, together=self._d_batchable)
            if self.guard.finite(self, {"loss_d_a": d_a.loss, "loss_d_b": d_b.loss}, opt_d):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_a.loss + d_b.loss)
                self.step_discriminators(opt_d)  # not counted: global_step counts iterations
                self.guard.step_done()

        if self.logs_due():
            logs = {f"train/{k}": v.detach() for k, v in g.losses.items()}
            self.log_training_step({**logs, **discriminator_logs("a", d_a), **discriminator_logs("b", d_b)},
                                   opt_g=opt_g, opt_d=opt_d, loss_g=logs["train/loss_g"],
                                   loss_d=d_a.loss.detach() + d_b.loss.detach(), batch_size=real_a.shape[0])
        return {D_ACCURACY: {"D_A": d_a.accuracy, "D_B": d_b.accuracy}}  # for the TrainingHealth callback

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        g = self.generator_losses(batch["A"], batch["B"])
        self.log_dict({f"val/{k}": v for k, v in g.losses.items()},
                      on_epoch=True, batch_size=batch["A"].shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_columns(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sample grid's columns by title, in order: a | G(a) | F(G(a)) | b | F(b) | G(F(b)), each (N, C, H, W)."""
        fake_b, fake_a = self.G_AB(real_a), self.G_BA(real_b)
        return {"real A": real_a, "A->B": fake_b, "A->B->A": self.G_BA(fake_b),
                "real B": real_b, "B->A": fake_a, "B->A->B": self.G_AB(fake_a)}
