import pytest
import torch

from cyclegan.models.networks import (
    DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator, init_weights,
)

GENERATORS = [
    GeneratorConfig(arch="resnet", ngf=8, n_blocks=2),
    GeneratorConfig(arch="resnet", ngf=8, n_blocks=2, norm="batch", dropout=True),
    GeneratorConfig(arch="resnet", ngf=8, n_blocks=1, norm="none", upsample="resize_conv"),
    GeneratorConfig(arch="unet", ngf=8, n_downs=5),
    GeneratorConfig(arch="unet", ngf=8, n_downs=5, norm="batch", upsample="resize_conv"),
]
DISCRIMINATORS = [
    DiscriminatorConfig(arch="patch", ndf=8, n_layers=3),
    DiscriminatorConfig(arch="patch", ndf=8, n_layers=2, norm="batch"),
    DiscriminatorConfig(arch="pixel", ndf=8, norm="none"),
]


@pytest.mark.parametrize("config", GENERATORS, ids=str)
@pytest.mark.parametrize("channels", [(3, 3), (1, 3)])
def test_generator_shape_range_and_every_parameter_gets_a_gradient(config, channels):
    net = init_weights(build_generator(config, input_nc=channels[0], output_nc=channels[1]))
    x = torch.rand(2, channels[0], 32, 32) * 2 - 1
    y = net(x)
    assert y.shape == (2, channels[1], 32, 32)
    assert y.abs().max() <= 1 and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("config", DISCRIMINATORS, ids=str)
def test_discriminator_outputs_patch_scores_and_trains(config):
    net = init_weights(build_discriminator(config, input_nc=3))
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape[:2] == (2, 1)
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_published_sizes():
    # Published numbers: ResNet-9 generator 11.378 M parameters; 70x70 PatchGAN gives 30x30 on 256 px.
    g = build_generator(GeneratorConfig(), input_nc=3, output_nc=3)
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    d = build_discriminator(DiscriminatorConfig(), input_nc=3)
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    pixel = build_discriminator(DiscriminatorConfig(arch="pixel"), input_nc=3)
    assert pixel(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_init_weights_is_normal_0_002():
    torch.manual_seed(0)
    g = init_weights(build_generator(GeneratorConfig(ngf=32, n_blocks=3), input_nc=3, output_nc=3), gain=0.02)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)
    assert all((m.bias == 0).all() for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None)
