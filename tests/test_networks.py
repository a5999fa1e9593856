import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cyclegan.models.blur import BlurDownsample, BlurUpsample
from cyclegan.models.layers import InstanceNorm2d, ReflectionPad2d, ReplicationPad2d, fast_layout
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


class _Casts(TorchDispatchMode):
    """Records the dtype conversions of tensors with a batch dimension (feature maps, not weights)."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.seen = batch, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and args[0].dim() == 4 and args[0].shape[0] == self.batch:
            self.seen.append((tuple(args[0].shape), args[0].dtype, out.dtype))
        return out


def test_under_cpu_bf16_autocast_feature_maps_are_not_cast_to_float32_for_padding():
    """CPU autocast runs reflection/replication padding in float32: before the padding layers kept
    their input's dtype, each padded convolution cast its feature map to float32 and back, both ways."""
    g = build_generator(GeneratorConfig(ngf=8, n_blocks=2, antialias=True, upsample="antialias"), input_nc=3, output_nc=3)
    d = build_discriminator(DiscriminatorConfig(ndf=8), input_nc=3)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", torch.bfloat16), _Casts(batch=3) as casts:
        y = g(x)
        d(y).float().mean().backward()
    to_float = [c for c in casts.seen if c[2] == torch.float32 and c[1] == torch.bfloat16]
    # Left: the blurs, which run in float32 on purpose (one cast in and one out, each way), and
    # the discriminator's float32 score for the loss.
    assert y.dtype == torch.bfloat16
    n_blurs = sum(isinstance(m, (BlurDownsample, BlurUpsample)) for m in g.modules())
    assert len(to_float) <= 2 * n_blurs + 2, to_float


@pytest.mark.parametrize("blur", [BlurDownsample, BlurUpsample])
def test_blurs_on_bf16_compute_in_float32_and_round_once(blur):
    """On the CPU a bf16 blur is the float32 blur rounded to bf16, under autocast or not, and its
    gradient reaches a bf16 input."""
    m = blur(4)
    x = (torch.rand(2, 4, 8, 8) * 2 - 1).bfloat16().requires_grad_()
    expected = m(x.detach().float()).bfloat16()
    for autocast in (False, True):
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            y = m(x)
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y, expected, rtol=0, atol=0)
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0


def test_padding_layers_are_torch_s_in_float32_and_script():
    x = torch.rand(1, 2, 5, 6)
    for ours, theirs in ((ReflectionPad2d(2), torch.nn.ReflectionPad2d(2)), (ReplicationPad2d(1), torch.nn.ReplicationPad2d(1))):
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
        torch.testing.assert_close(torch.jit.script(ours)(x), theirs(x), rtol=0, atol=0)
        assert ours.state_dict() == {}


def test_one_image_under_cpu_bf16_autocast_runs_channels_last_and_float32_is_untouched():
    """oneDNN's bf16 convolutions work channels-last: one image larger than 128 x 128 goes through
    G and D in that layout, with the same values as NCHW (up to bf16 rounding); batches, small
    images and float32 stay as they were."""
    g = build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3).eval()
    d = build_discriminator(DiscriminatorConfig(ndf=8), input_nc=3)
    x = torch.rand(1, 3, 132, 132) * 2 - 1
    with torch.autocast("cpu", torch.bfloat16):
        y, score = g(x), d(x)
        assert fast_layout(x).is_contiguous(memory_format=torch.channels_last)
        batch, small = x.repeat(2, 1, 1, 1), x[:, :, :128, :128].contiguous()
        assert fast_layout(batch) is batch  # batches: channels-last instance norm copies
        assert fast_layout(small) is small  # small images: slower channels-last
        y2 = g(x.repeat(2, 1, 1, 1))
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert score.is_contiguous(memory_format=torch.channels_last)
    assert y2.is_contiguous()
    torch.testing.assert_close(y.float(), y2[:1].float(), rtol=0, atol=0.05)  # the NCHW path, same image
    assert (y.float() - y2[:1].float()).abs().mean() < 0.01
    assert fast_layout(x) is x and g(x).is_contiguous()  # float32: not converted


def test_instance_norm_on_one_channels_last_image_is_torch_s_and_keeps_the_layout():
    x = torch.randn(1, 6, 9, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    ours, theirs = InstanceNorm2d(6), torch.nn.InstanceNorm2d(6)
    y = ours(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, theirs(x.contiguous()), rtol=1e-5, atol=1e-6)
    y.square().sum().backward()
    g_ours = x.grad.clone()
    x.grad = None
    theirs(x.contiguous()).square().sum().backward()
    torch.testing.assert_close(g_ours, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.jit.script(ours)(x.detach()), y.detach(), rtol=1e-5, atol=1e-6)
