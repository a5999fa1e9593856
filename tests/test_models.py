import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from conftest import with_written_out_instance_norms

from cyclegan import CUT, CycleGAN, DiscriminatorConfig, FastCUT, GeneratorConfig, Method1, UnpairedImageDataModule
from cyclegan.training.base import linear_decay

TINY = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2))


class _Snapshots(pl.Callback):
    """Parameters before each optimizer step and after the batch."""

    def __init__(self):
        self.snaps = []

    def _snap(self, module):
        self.snaps.append({k: v.detach().clone() for k, v in module.named_parameters()})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._snap(pl_module)

    def on_train_batch_end(self, trainer, pl_module, *args):
        self._snap(pl_module)


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys
    return [k for k in keys if not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("model_cls, gens, discs", [
    (CycleGAN, ("G_AB", "G_BA"), ("D_A", "D_B")),
    (Method1, ("G_AB",), ("D_B",)),
])
def test_generator_step_leaves_discriminators_bitwise_unchanged_and_vice_versa(tiny_root, model_cls, gens, discs):
    pl.seed_everything(0)
    model = model_cls(**TINY)
    snaps = _Snapshots()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[snaps])
    trainer.fit(model, UnpairedImageDataModule(str(tiny_root), load_size=36, crop_size=32, num_workers=0))
    before_g, before_d, after = snaps.snaps
    for d in discs:  # generator step
        assert _changed(before_g, before_d, d) == [], d
    for g in gens:
        assert _changed(before_g, before_d, g), g
    for g in gens:  # discriminator step
        assert _changed(before_d, after, g) == [], g
    for d in discs:
        assert _changed(before_d, after, d), d
    assert trainer.global_step == 1  # one iteration, though two optimizers stepped


def test_cycle_and_identity_losses_are_zero_for_identity_generators():
    model = CycleGAN(**TINY)
    model.G_AB, model.G_BA = nn.Identity(), nn.Identity()
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    out = model.generator_losses(a, b).losses
    for k in ("loss_cycle_a", "loss_cycle_b", "loss_idt_a", "loss_idt_b"):
        assert out[k].item() == 0.0, k
    # What is left is the adversarial part, here against the untrained D on the unchanged images.
    expected = ((model.D_B(a) - 1) ** 2).mean() + ((model.D_A(b) - 1) ** 2).mean()
    assert out["loss_g"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_cycle_and_identity_terms_are_weighted_l1():
    model = CycleGAN(**TINY, lambda_a=10.0, lambda_b=4.0, lambda_identity=0.5)
    shift = 0.25
    model.G_AB = model.G_BA = _Shift(shift)
    a, b = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    out = model.generator_losses(a, b).losses
    assert out["loss_cycle_a"].item() == pytest.approx(10.0 * 2 * shift)  # F(G(a)) = a + 2 shift
    assert out["loss_cycle_b"].item() == pytest.approx(4.0 * 2 * shift)
    assert out["loss_idt_a"].item() == pytest.approx(10.0 * 0.5 * shift)
    assert out["loss_idt_b"].item() == pytest.approx(4.0 * 0.5 * shift)
    assert "loss_idt_a" not in CycleGAN(**TINY, lambda_identity=0).generator_losses(a, b).losses


class _Shift(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x + self.s


def test_linear_decay_matches_published_rule():
    f = linear_decay(n_epochs=3, n_epochs_decay=3)
    # constant for 3 epochs, then 3/4, 2/4, 1/4, reaching 0 as the last epoch ends
    assert [f(k) for k in range(9)] == [1, 1, 1, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]


def test_identity_loss_needs_matching_channels():
    with pytest.raises(ValueError, match="lambda_identity"):
        CycleGAN(**TINY, input_nc=1, output_nc=3)
    CycleGAN(**TINY, input_nc=1, output_nc=3, lambda_identity=0)


def test_method1_identity_term_is_off_by_default_and_weighted_l1_when_on():
    a, b = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    plain = Method1(**TINY)
    assert set(plain.generator_losses(a, b)[0]) == {"loss_g_adv_ab"}  # the published baseline: GAN loss alone
    model = Method1(**TINY, lambda_b=4.0, lambda_identity=0.5)
    model.G_AB = _Shift(0.25)
    terms, fake_b = model.generator_losses(a, b)
    assert terms["loss_idt_b"].item() == pytest.approx(4.0 * 0.5 * 0.25)
    torch.testing.assert_close(fake_b, a + 0.25)


@pytest.mark.parametrize("model_class", [CycleGAN, Method1])
def test_discriminators_take_their_own_lr_when_given(model_class):
    tiny = dict(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=1))
    (opt_g, opt_d), (sched_g, sched_d) = model_class(**tiny, lr=2e-4, lr_d=8e-4).configure_optimizers()
    assert [g["lr"] for g in opt_g.param_groups] == [2e-4] and [g["lr"] for g in opt_d.param_groups] == [8e-4]
    assert sched_g.base_lrs == [2e-4] and sched_d.base_lrs == [8e-4]  # both decay linearly from their own LR
    (_, opt_d), _ = model_class(**tiny, lr=2e-4).configure_optimizers()
    assert [g["lr"] for g in opt_d.param_groups] == [2e-4]  # as published: one LR


def _generator_terms(model, a, b):
    torch.manual_seed(7)  # the same augmentations and patch locations for both models
    if isinstance(model, CUT):
        return model.generator_losses(a, b, *model.translate_batch(a, b))
    if isinstance(model, Method1):
        return model.generator_losses(a, b)[0]
    return model.generator_losses(a, b).losses


@pytest.mark.parametrize("model_cls", [CycleGAN, Method1, CUT, FastCUT])
def test_the_generator_gradient_of_one_image_is_the_instance_norm_definition_s(model_cls):
    """PyTorch's CPU instance norm backward is wrong for one image fed a channels-last gradient (it
    hit PatchNCE's gather): every model's generator terms at batch 1, D seeing translated images,
    give the gradient of networks whose instance norms are written out by their formula."""
    model = model_cls(generator=GeneratorConfig(ngf=8, n_blocks=2), discriminator=DiscriminatorConfig(ndf=8, n_layers=2),
                      diff_augment=("color", "translation", "cutout"))
    if isinstance(model, CUT):
        model.hparams.flip_equivariance = False
    written_out = with_written_out_instance_norms(model)
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    grads = []
    for net in (model, written_out):
        terms = _generator_terms(net, a, b)
        loss = sum(v for k, v in terms.items() if k != "loss_g")
        params = [p for p in net.parameters() if p.requires_grad]
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None]))
    assert grads[0].shape == grads[1].shape
    assert ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 1e-4
