"""CUT and FastCUT (Park, Efros, Zhang, Zhu, "Contrastive Learning for Unpaired Image-to-Image
Translation", ECCV 2020): one generator, one discriminator, and PatchNCE to keep the content.

Names in code vs the paper and the authors' code (taesungp/contrastive-unpaired-translation):
    G_AB = G (netG)          D_B = D (netD, judges domain B)       nce_heads = H_l (netF, mlp_sample)
    lambda_gan = lambda_X (lambda_GAN)      lambda_nce = lambda_NCE      nce_idt = nce_idt
    nce_layers = nce_layers      nce_patches = S (num_patches)      nce_temperature = tau (nce_T)
    nce_head_dim = netF_nc
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from cyclegan.models.losses import discriminator_loss, gan_loss
from cyclegan.models.networks import (
    DiscriminatorConfig, GeneratorConfig, batching_pays, build_discriminator, build_generator, init_weights,
    samples_independent,
)
from cyclegan.models.patchnce import PatchHeads, patch_nce_loss, sample_locations
from cyclegan.training.base import D_ACCURACY, TranslationModel, discriminator_logs

# The authors' defaults: antialiased ResNet-9 and PatchGAN (their --no_antialias / --no_antialias_up off).
PUBLISHED_GENERATOR = GeneratorConfig(antialias=True, upsample="antialias")
PUBLISHED_DISCRIMINATOR = DiscriminatorConfig(antialias=True)


class CUT(TranslationModel):
    """G_AB against D_B, with PatchNCE tying each patch of G(a) to the patch of a at the same place.

    Generator objective (Eqn. 5 of the paper; with ``nce_idt``, the two NCE terms averaged):
        L_G = lambda_gan * L_GAN(G, D_B)
            + lambda_nce * [ L_PatchNCE(G(a), a) + L_PatchNCE(G(b), b) ] / 2
    Discriminator: L_D = 0.5 * (L(D_B(b), 1) + L(D_B(G(a)), 0)), no image pool.
    Each iteration updates D_B first, then G and the heads (with D_B already updated), as published.

    Args:
        lambda_gan, lambda_nce: weights of the adversarial and the PatchNCE terms.
        nce_idt: also PatchNCE on (G(b), b), the identity term (CUT: on; FastCUT: off).
        nce_layers: the generator's layers PatchNCE reads; ``None``: the generator's rule
            (ResNet: the padded input, both downsampling convolutions, residual blocks 1 and 5, or
            the last one when fewer: the authors' 0,4,8,12,16 on their ResNet-9; U-Net: the input
            and its first four downsampling convolutions). See ``default_feature_layers``.
        nce_patches: locations sampled per layer and image (the same for the input and the output).
        nce_temperature: tau of the InfoNCE softmax.
        nce_head_dim: width of the 2-layer MLP heads, one per layer, trained with G's optimizer.
        flip_equivariance: with probability 0.5 per iteration, feed G the mirrored input and
            mirror its features back before PatchNCE (FastCUT).
        init_type: ``xavier`` (the authors' default for CUT) or ``normal`` (CycleGAN's), with ``init_gain``.
        **kwargs: what every model has: see :class:`~cyclegan.training.base.TranslationModel`.
    """

    kind = "cut"
    directions = {"a2b": "G_AB"}

    def __init__(
        self, *, lambda_gan: float = 1.0, lambda_nce: float = 1.0, nce_idt: bool = True,
        nce_layers: list[int] | None = None, nce_patches: int = 256, nce_temperature: float = 0.07,
        nce_head_dim: int = 256, flip_equivariance: bool = False, init_type: Literal["normal", "xavier"] = "xavier",
        generator: GeneratorConfig = PUBLISHED_GENERATOR, discriminator: DiscriminatorConfig = PUBLISHED_DISCRIMINATOR,
        pool_size: int = 0, n_epochs: int = 200, n_epochs_decay: int = 200, **kwargs: Any,
    ) -> None:
        super().__init__(generator=generator, discriminator=discriminator, pool_size=pool_size,
                         n_epochs=n_epochs, n_epochs_decay=n_epochs_decay, **kwargs)
        hp, g, d = self.hparams, self.generator_config, self.discriminator_config
        if nce_idt and hp.input_nc != hp.output_nc:
            raise ValueError(f"nce_idt feeds G images of B, so it needs input_nc == output_nc "
                             f"(got {hp.input_nc}, {hp.output_nc}); set nce_idt: false")
        init = dict(gain=hp.init_gain, kind=init_type)
        self.G_AB = init_weights(build_generator(g, input_nc=hp.input_nc, output_nc=hp.output_nc), **init)
        self.D_B = init_weights(build_discriminator(d, input_nc=hp.output_nc), **init)
        self.nce_layers = check_nce_layers(self.G_AB, nce_layers)
        heads = PatchHeads(self.G_AB.feature_channels(self.nce_layers), nc=nce_head_dim)
        self.nce_heads = init_weights(heads, **init)
        self.setup_training(generators=[self.G_AB], discriminators=[self.D_B], pools=("b",), auxiliary=[self.nce_heads])
        self._g_batchable = samples_independent(self.G_AB)
        self._d_batchable = samples_independent(self.D_B)
        self.pool_b = self.pools["b"]  # size 0 as published: D sees this iteration's fakes
        # Random draws, as attributes so that a test can replay another implementation's:
        self.sample_locations = sample_locations  # (features, patches, rng) -> locations per layer
        self.coin = lambda: bool(torch.rand(()) < 0.5)  # mirror this iteration? (CPU RNG: no device sync)

    # ------------------------------------------------------------------------ losses
    def encode(self, *images: torch.Tensor) -> list[list[torch.Tensor]]:
        """G's features at the NCE layers, per image batch; one call when batching is the same computation."""
        x = images[0]
        if len(images) > 1 and self._g_batchable and batching_pays(x):
            feats = self.G_AB.encode(torch.cat(images), self.nce_layers)
            return [list(parts) for parts in zip(*(f.split(x.shape[0]) for f in feats))]
        return [self.G_AB.encode(im, self.nce_layers) for im in images]

    def patch_nce(self, sources: list[torch.Tensor], outputs: list[torch.Tensor], flipped: bool,
                  rng: torch.Generator | None = None, key_feats: list[list[torch.Tensor]] | None = None) -> list[torch.Tensor]:
        """lambda_nce * L_PatchNCE(G(x), x) for each (x, G(x)): the mean over layers of the mean
        per-patch loss. Locations come from torch's RNG on the features' device, or from ``rng``.
        ``key_feats``: x's features at the NCE layers when G's forward pass already gave them."""
        hp = self.hparams
        if key_feats is None:
            with torch.no_grad():  # the keys: detached in the loss, so no graph is kept for them
                key_feats = self.encode(*sources)
        query_feats = self.encode(*outputs)
        losses = []
        for src, feat_k, feat_q in zip(sources, key_feats, query_feats):
            if flipped:  # G saw the mirrored input: mirror its features back to line up with x's
                feat_q = [f.flip(3) for f in feat_q]
            ids = self.sample_locations(feat_k, hp.nce_patches, rng)
            with torch.no_grad():
                keys = self.nce_heads(feat_k, ids)
            queries = self.nce_heads(feat_q, ids)
            per_layer = [patch_nce_loss(q, k, batch=src.shape[0], temperature=hp.nce_temperature).mean() * hp.lambda_nce
                         for q, k in zip(queries, keys)]
            losses.append(sum(per_layer) / len(per_layer))
        return losses

    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor,
                         idt_b: torch.Tensor | None, flipped: bool,
                         key_feats: list[list[torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        """The weighted terms of L_G (they sum to it). ``key_feats``: as in :meth:`patch_nce`."""
        hp = self.hparams
        terms = {"loss_g_adv_ab": gan_loss(self.D_B(self.augment(fake_b)), True, mode=hp.gan_mode) * hp.lambda_gan}
        if hp.lambda_nce > 0:
            if idt_b is None:
                (terms["loss_nce_ab"],) = self.patch_nce([real_a], [fake_b], flipped, key_feats=key_feats)
            else:  # the two NCE terms averaged
                nce, nce_idt = self.patch_nce([real_a, real_b], [fake_b, idt_b], flipped, key_feats=key_feats)
                terms["loss_nce_ab"], terms["loss_nce_idt_b"] = 0.5 * nce, 0.5 * nce_idt
        return terms

    def translate_batch(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor | None, bool, list[list[torch.Tensor]] | None]:
        """G on a (and b, for the identity term) in one call, mirrored half the time with flip
        equivariance: (G(a), G(b) or None, whether mirrored, the PatchNCE keys' features of a
        (and b) or None). The coin is drawn on the CPU.

        Unmirrored, G's forward pass computes the features PatchNCE takes its keys from (keys are
        detached, and G does not change between this pass and the loss): they are kept from it
        instead of encoding a and b again (the authors encode them a second time: the same numbers,
        one encoder pass more). Mirrored, the keys need the unmirrored input's features: encoded apart.
        """
        hp = self.hparams
        real = torch.cat([real_a, real_b]) if hp.nce_idt else real_a  # (N or 2N, C, H, W)
        flipped = bool(hp.flip_equivariance and self.coin())
        n = real_a.shape[0]
        if flipped or hp.lambda_nce <= 0 or not hasattr(self.G_AB, "forward_features"):
            fake, key_feats = self.G_AB(real.flip(3) if flipped else real), None
        else:
            fake, feats = self.G_AB.forward_features(real, self.nce_layers)  # feats: [(N or 2N, C_l, H_l, W_l)]
            parts = [f.detach().split(n) for f in feats]  # per layer: a's rows, then b's
            key_feats = [list(p) for p in zip(*parts)]  # per source (a, b): per layer
        return fake[:n], (fake[n:] if hp.nce_idt else None), flipped, key_feats

    # ------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        real_a, real_b = batch["A"], batch["B"]  # (N, C, H, W) each, in [-1, 1]
        opt_g, opt_d = self.optimizers()
        fake_b, idt_b, flipped, key_feats = self.translate_batch(real_a, real_b)  # (N, C, H, W): G(a) [mirrored], G(b)

        # 1. D_B on b and on this iteration's G(a), first (as published: G then meets the updated D).
        with self.toggled_optimizer(opt_d):
            d_b = discriminator_loss(self.D_B, self.augment(real_b), self.augment(self.pool_b.query(fake_b.detach())),
                                     mode=self.hparams.gan_mode, lambda_gp=self.hparams.lambda_gp,
                                     together=self._d_batchable)
            if self.guard.finite(self, {"loss_d_b": d_b.loss}, opt_d):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_b.loss)
                self.step_discriminators(opt_d)  # not counted: global_step counts iterations

        # 2. G and the heads, with D_B frozen.
        with self.toggled_optimizer(opt_g):
            terms = self.generator_losses(real_a, real_b, fake_b, idt_b, flipped, key_feats)
            loss_g = sum(terms.values())
            if not self.guard.finite(self, terms, opt_g):
                return None
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.guard.step_done()

        if self.logs_due():
            logs = {"train/loss_g": loss_g.detach(), **{f"train/{k}": v.detach() for k, v in terms.items()},
                    **discriminator_logs("b", d_b)}
            self.log_training_step(logs, opt_g=opt_g, opt_d=opt_d, loss_g=loss_g.detach(), loss_d=d_b.loss.detach(),
                                   batch_size=real_a.shape[0])
        return {D_ACCURACY: {"D_B": d_b.accuracy}}  # for the TrainingHealth callback

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real_a = batch["A"]
        fake_b = self.G_AB(real_a)
        # Locations from a generator of their own: validation leaves the training's random stream alone.
        (nce,) = self.patch_nce([real_a], [fake_b], False, rng=torch.Generator().manual_seed(batch_idx))
        self.log_dict({"val/loss_g_adv_ab": gan_loss(self.D_B(fake_b), True, mode=self.hparams.gan_mode),
                       "val/loss_nce_ab": nce}, on_epoch=True, batch_size=real_a.shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_columns(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Columns of the sample grid, each (N, C, H, W): a, G(a), and with the identity term b, G(b)."""
        columns = {"real A": real_a, "A->B": self.G_AB(real_a)}
        if self.hparams.nce_idt:
            columns.update({"real B": real_b, "B->B": self.G_AB(real_b)})
        return columns


class FastCUT(CUT):
    """CUT without the identity term, with PatchNCE weighted 10 and flip equivariance; 150 + 50
    epochs (the authors' ``--CUT_mode FastCUT``). 0.41x CycleGAN's FLOPs per iteration (docs/cut.md)."""

    kind = "fastcut"

    def __init__(self, *, lambda_nce: float = 10.0, nce_idt: bool = False, flip_equivariance: bool = True,
                 n_epochs: int = 150, n_epochs_decay: int = 50, **kwargs: Any) -> None:
        super().__init__(lambda_nce=lambda_nce, nce_idt=nce_idt, flip_equivariance=flip_equivariance,
                         n_epochs=n_epochs, n_epochs_decay=n_epochs_decay, **kwargs)


def check_nce_layers(generator: torch.nn.Module, layers: list[int] | None) -> list[int]:
    """The NCE layers to use: the generator's rule when ``None``; refused in one line when the
    generator cannot give features or the layers are not among its own."""
    if not hasattr(generator, "encode"):
        raise ValueError(f"PatchNCE needs a generator that gives its layers' features; {type(generator).__name__} does not")
    chosen = generator.default_feature_layers() if layers is None else sorted(set(layers))
    n = len(generator.model) if isinstance(generator.model, torch.nn.Sequential) else generator.n_downs + 1
    if not chosen or chosen[0] < 0 or chosen[-1] >= n:
        raise ValueError(f"nce_layers {layers} are not layers of this generator (it has 0-{n - 1})")
    return chosen
