"""CUT and FastCUT: one training step against the authors' code, PatchNCE by hand, the NCE layer rule."""

import math
import re

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from conftest import with_written_out_instance_norms

from cyclegan import CUT, FastCUT
from cyclegan.inference.authors import _our_key
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig, build_generator
from cyclegan.models.patchnce import patch_nce_loss
from cyclegan.training.cut import check_nce_layers

FIXTURE = "tests/fixtures/cut_step.pt"  # made by tests/fixtures/make_cut_step.py from the authors' code
PUBLISHED_SMALL = dict(generator=GeneratorConfig(ngf=4, n_blocks=6, antialias=True, upsample="antialias"),
                       discriminator=DiscriminatorConfig(ndf=4, n_layers=3, antialias=True), nce_head_dim=32)


def _ours(state: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The authors' G, D and F state dicts as our model's."""
    out = {"G_AB." + _our_key(k): v for k, v in state["G"].items()}
    out.update({"D_B." + k: v for k, v in state["D"].items()})
    out.update({"nce_heads." + re.sub(r"^mlp_(\d+)\.", r"mlps.\1.", k): v for k, v in state["F"].items()})
    return out


class _Logged(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        self.logs = {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize("model_cls, mode", [(CUT, "CUT"), (FastCUT, "FastCUT")])
def test_one_step_gives_the_authors_losses_and_weights(model_cls, mode):
    ref = torch.load(FIXTURE, weights_only=True)[mode]
    model = model_cls(**PUBLISHED_SMALL)
    model.load_state_dict(_ours(ref["before"]))
    ids = iter(ref["patch_ids"])  # their draws, in their order: the translation's NCE, then the identity's
    model.sample_locations = lambda feats, n, rng=None: next(ids)
    model.coin = lambda: ref["flipped"]
    logged = _Logged()
    data = [{"A": a, "B": b} for a, b in zip(ref["batch"]["A"], ref["batch"]["B"])]
    pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, log_every_n_steps=1,
               callbacks=[logged], enable_model_summary=False).fit(model, DataLoader(data, batch_size=2))

    theirs, ours = ref["losses"], logged.logs
    assert ours["train/loss_d_b"] == pytest.approx(0.5 * (theirs["D_real"] + theirs["D_fake"]), rel=1e-5)
    assert ours["train/loss_g_adv_ab"] == pytest.approx(theirs["G_GAN"], rel=1e-5)
    assert ours["train/loss_g"] == pytest.approx(theirs["G"], rel=1e-5)
    if mode == "CUT":  # the two NCE terms averaged
        assert ours["train/loss_nce_ab"] == pytest.approx(0.5 * theirs["NCE"], rel=1e-5)
        assert ours["train/loss_nce_idt_b"] == pytest.approx(0.5 * theirs["NCE_Y"], rel=1e-5)
    else:
        assert ours["train/loss_nce_ab"] == pytest.approx(theirs["NCE"], rel=1e-5)
        assert "train/loss_nce_idt_b" not in ours and ref["flipped"]
    before, after = _ours(ref["before"]), _ours(ref["after"])
    noise = _cancelled_biases(model)
    moved = 0
    for name, value in model.state_dict().items():
        if name in noise:  # gradient 0 up to rounding, so Adam's first step is +-lr either way
            assert (value - before[name]).abs().max() <= 1.01 * model.hparams.lr
            continue
        torch.testing.assert_close(value, after[name], rtol=1e-4, atol=1e-6, msg=name)
        moved += not torch.equal(before[name], after[name])
    assert moved > 40  # G, D and the heads all took their step


def _cancelled_biases(model: torch.nn.Module) -> set[str]:
    """Biases of convolutions followed by instance norm, which subtracts them again."""
    names = set()
    for prefix, seq in model.named_modules():
        if isinstance(seq, torch.nn.Sequential):
            kids = list(seq.named_children())
            names |= {f"{prefix}.{n}.bias" for (n, a), (_, b) in zip(kids, kids[1:])
                      if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.InstanceNorm2d)}
    return names


def test_patch_nce_matches_a_hand_computation():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)  # 2 images x 3 patches
    k = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    loss = patch_nce_loss(q, k, batch=2, temperature=0.07)
    for i in range(6):
        img = i // 3
        others = [j for j in range(img * 3, img * 3 + 3) if j != i]  # negatives: the same image's other patches
        logits = [q[i] @ k[i]] + [q[i] @ k[j] for j in others] + [torch.tensor(-10.0)]  # masked diagonal
        logits = torch.stack(logits) / 0.07
        assert float(loss[i]) == pytest.approx(float(-logits[0] + torch.logsumexp(logits, 0)), rel=1e-4, abs=1e-6)
    assert float(patch_nce_loss(k, k, batch=2).mean()) < float(loss.mean())  # the right patch scores best


def test_nce_layers_follow_the_generator_rule_and_bad_ones_are_refused():
    published = build_generator(GeneratorConfig(antialias=True, upsample="antialias"), input_nc=3, output_nc=3)
    assert published.default_feature_layers() == [0, 4, 8, 12, 16]  # the authors' layers of their ResNet-9
    plain = build_generator(GeneratorConfig(n_blocks=6), input_nc=3, output_nc=3)
    assert plain.default_feature_layers() == [0, 4, 7, 10, 14]  # the same features, without the blur layers
    assert plain.feature_channels([0, 4, 7, 10]) == [3, 128, 256, 256]
    tiny = build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3)
    assert tiny.default_feature_layers() == [0, 4, 7, 10, 11]
    unet = build_generator(GeneratorConfig(arch="unet", ngf=4, n_downs=6), input_nc=3, output_nc=3)
    feats = unet.encode(torch.zeros(1, 3, 64, 64), unet.default_feature_layers())
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 64, 64), (4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4)]
    with pytest.raises(ValueError, match=r"nce_layers \[0, 40\] are not layers of this generator \(it has 0-24\)"):
        check_nce_layers(plain, [0, 40])
    with pytest.raises(ValueError, match="needs a generator that gives its layers' features"):
        check_nce_layers(torch.nn.Conv2d(3, 3, 1), None)
    with pytest.raises(ValueError, match="antialiased sampling is built for the ResNet generator only"):
        CUT(generator=GeneratorConfig(arch="unet", n_downs=5, antialias=True))


def test_fastcut_defaults_are_the_published_ones():
    fast, cut = FastCUT(**PUBLISHED_SMALL).hparams, CUT(**PUBLISHED_SMALL).hparams
    assert (fast.lambda_nce, fast.nce_idt, fast.flip_equivariance, fast.n_epochs, fast.n_epochs_decay) == (10.0, False, True, 150, 50)
    assert (cut.lambda_nce, cut.nce_idt, cut.flip_equivariance, cut.n_epochs, cut.n_epochs_decay) == (1.0, True, False, 200, 200)
    assert cut.pool_size == 0 and cut.nce_patches == 256 and cut.nce_temperature == 0.07 and math.isclose(cut.lambda_gan, 1)


def test_a_patch_whose_head_output_is_zero_gets_a_finite_gradient():
    from cyclegan.models.patchnce import PatchHeads

    heads = PatchHeads([2], nc=4)
    torch.nn.init.zeros_(heads.mlps[0][0].weight)
    torch.nn.init.zeros_(heads.mlps[0][0].bias)  # every ReLU off: the head's output is exactly 0
    feats = [torch.randn(1, 2, 3, 3, requires_grad=True)]
    (out,) = heads(feats, [torch.arange(4)])
    out.sum().backward()  # the published normalisation gives NaN here
    assert all(p.grad.isfinite().all() for p in heads.parameters())


def test_an_antialiased_generator_round_trips_through_the_cut_authors_layout(tmp_path):
    from cyclegan.inference.authors import authors_state_dict, load_authors_generator

    torch.manual_seed(0)
    ours = build_generator(GeneratorConfig(ngf=4, n_blocks=9, antialias=True, upsample="antialias"), input_nc=3, output_nc=3)
    state = authors_state_dict(ours)
    assert "model.7.filt" in state and "model.21.filt" in state and "model.12.conv_block.1.weight" in state
    torch.save(state, tmp_path / "latest_net_G.pth")
    loaded, spec = load_authors_generator(tmp_path / "latest_net_G.pth")
    assert spec.config == GeneratorConfig(ngf=4, n_blocks=9, antialias=True, upsample="antialias")
    assert spec.authors_options() == "--model cut --netG resnet_9blocks --ngf 4 --normG instance --input_nc 3 --output_nc 3"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), ours.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_the_configs_compose_with_every_overlay(model, tmp_path):
    from pathlib import Path

    from cyclegan.cli import build_cli

    configs = Path(__file__).resolve().parents[1] / "configs"
    demo = Path(__file__).resolve().parents[1] / "datasets" / "emoji2lineart"

    def build(*overlay: str):
        return build_cli(["--config", str(configs / f"{model}.yaml"), *overlay, "--data.root", str(demo),
                          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"], run=False).model

    published = build()
    assert type(published).__name__ == {"cut": "CUT", "fastcut": "FastCUT"}[model]
    assert published.nce_layers == [0, 4, 8, 12, 16] and published.hparams.pool_size == 0
    tiny = build("--config", str(configs / "tiny.yaml"))
    assert tiny.nce_layers == [0, 4, 8, 12, 13]  # 2 residual blocks: the last stands in for the fifth
    fast = build("--config", str(configs / "fast.yaml"))
    assert type(fast.G_AB).__name__ == "UnetGenerator" and fast.nce_layers == [0, 1, 2, 3, 4]
    fast.train()
    batch = {"A": torch.rand(2, 3, 64, 64) * 2 - 1, "B": torch.rand(2, 3, 64, 64) * 2 - 1}
    fake_b, _, _, keys = fast.translate_batch(batch["A"], batch["B"])
    terms = fast.generator_losses(batch["A"], batch["B"], fake_b, None, False, keys)
    assert torch.isfinite(terms["loss_nce_ab"]) and terms["loss_nce_ab"] > 0


@pytest.mark.parametrize("nce_idt", [True, False])
def test_keys_come_from_the_forward_pass_with_the_numbers_of_a_second_encoding(nce_idt):
    model = CUT(**PUBLISHED_SMALL, nce_idt=nce_idt)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    encoded = []
    encode = model.encode
    model.encode = lambda *images: encoded.append(len(images)) or encode(*images)
    fake_b, idt_b, flipped, keys = model.translate_batch(a, b)
    assert not flipped and len(keys) == (2 if nce_idt else 1) and encoded == []
    with torch.no_grad():
        apart = encode(a, b) if nce_idt else encode(a)
    for kept, again in zip(keys, apart):
        for k, e in zip(kept, again, strict=True):
            assert not k.requires_grad
            torch.testing.assert_close(k, e, rtol=1e-5, atol=1e-6)
    draws = [torch.Generator().manual_seed(0) for _ in range(2)]
    sample = model.sample_locations
    for rng in draws:  # the same locations for both computations
        model.sample_locations = lambda feats, n, _r=None, rng=rng: sample(feats, n, rng)
        if rng is draws[0]:
            with_keys = model.generator_losses(a, b, fake_b, idt_b, flipped, keys)
        else:
            without = model.generator_losses(a, b, fake_b, idt_b, flipped)
    assert encoded == [2 if nce_idt else 1] * 3  # the outputs' queries; then the keys and the queries
    for name in with_keys:
        torch.testing.assert_close(with_keys[name], without[name], rtol=1e-5, atol=1e-6)



@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_nce_gradient_of_one_image_is_right(channels_last):
    """The PatchNCE gradient into G's input for one image (FastCUT trains at batch 1) equals the one
    through instance norms written out by their definition. Gathering an NCHW map through a
    channels-last view had given the residual blocks' instance norms a channels-last gradient,
    which PyTorch's CPU norm backward gets wrong for one image: relative error 1.1 before the fix."""
    model = CUT(**PUBLISHED_SMALL)
    written_out = with_written_out_instance_norms(model)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    ids = model.sample_locations(model.G_AB.encode(x, model.nce_layers), 256)
    weights = [torch.randn(min(256, i.numel()), 32) for i in ids]

    def input_grad(net):
        image = x.clone().requires_grad_(True)
        inp = image.contiguous(memory_format=torch.channels_last) if channels_last else image
        queries = net.nce_heads(net.G_AB.encode(inp, net.nce_layers), ids)  # [(P_l, 32)]
        return torch.autograd.grad(sum((q * w).sum() for q, w in zip(queries, weights)), image)[0]

    torch.testing.assert_close(input_grad(model), input_grad(written_out), rtol=1e-4, atol=1e-5)
