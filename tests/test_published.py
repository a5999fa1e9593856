"""Files of the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix): reading their generator
and discriminator state dicts, writing ours in their layout, and a run folder's four networks.

The authors'-layout files are made here from our own networks by renaming keys the way their
modules name them (``conv_block`` in the ResNet block, ``net.`` in the pixel discriminator)
and, for files saved before PyTorch 0.4, adding the instance-norm running statistics."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cyclegan.errors import CheckpointError, CycleGANError
from cyclegan.models.networks import (
    DiscriminatorConfig, GeneratorConfig, PixelDiscriminator, build_discriminator, build_generator, init_weights,
)
from cyclegan.inference.authors import (
    RUN_NETWORKS, GeneratorSpec, authors_state_dict, infer_discriminator, load_authors_generator, load_run,
    read_state_dict, run_files,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Networks this small run fastest on one thread (two threads on shared cores spin).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def their_key(key: str, net: nn.Module) -> str:
    key = re.sub(r"^model\.(\d+)\.block\.", r"model.\1.conv_block.", key)
    return "net." + key[len("model."):] if isinstance(net, PixelDiscriminator) else key


def authors_state(net: nn.Module, *, pre_0_4: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """``net``'s weights as the authors' code names them. ``pre_0_4``: with the instance-norm
    running statistics that files saved before PyTorch 0.4 carry (nonsense values: they
    must be dropped, never used), and without batch norm's ``num_batches_tracked``."""
    state = {their_key(k, net): v.clone() for k, v in net.state_dict().items()}
    if pre_0_4:
        g = torch.Generator().manual_seed(seed)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        for name, module in net.named_modules():
            if isinstance(module, nn.InstanceNorm2d):
                name = their_key(name + ".", net).rstrip(".")
                state[f"{name}.running_mean"] = torch.randn(module.num_features, generator=g)
                state[f"{name}.running_var"] = torch.rand(module.num_features, generator=g) + 3
    return state


def random_net(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights large enough that outputs differ visibly, batch-norm statistics not trivial."""
    torch.manual_seed(seed)
    init_weights(net, gain=0.3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(7)
    return net.eval()


def save(state, path, *, legacy: bool = False):
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


GENERATORS = {
    "resnet6_ngf8": (GeneratorConfig(arch="resnet", ngf=8, n_blocks=6), 32),
    "resnet6_ngf16": (GeneratorConfig(arch="resnet", ngf=16, n_blocks=6), 32),
    "resnet9_ngf8": (GeneratorConfig(arch="resnet", ngf=8, n_blocks=9), 32),
    "resnet9_ngf16": (GeneratorConfig(arch="resnet", ngf=16, n_blocks=9), 32),
    "resnet_batch_dropout": (GeneratorConfig(arch="resnet", ngf=8, n_blocks=3, norm="batch", dropout=True), 32),
    "resnet_resize_conv": (GeneratorConfig(arch="resnet", ngf=8, n_blocks=2, upsample="resize_conv"), 32),
    "unet128": (GeneratorConfig(arch="unet", ngf=8, n_downs=7), 128),
    "unet256": (GeneratorConfig(arch="unet", ngf=8, n_downs=8), 256),
    "unet128_batch": (GeneratorConfig(arch="unet", ngf=8, n_downs=7, norm="batch"), 128),
}


CASES = [(name, False) for name in GENERATORS] + [
    (name, True) for name in ("resnet9_ngf8", "resnet_batch_dropout", "unet128", "unet128_batch")
]


@pytest.mark.parametrize("name, pre_0_4", CASES, ids=[f"{n}{'-pre0.4' if old else ''}" for n, old in CASES])
def test_authors_generator_file_gives_our_generators_output(tmp_path, name, pre_0_4):
    config, size = GENERATORS[name]
    ours = random_net(build_generator(config, input_nc=3, output_nc=1 if "unet" in name else 3))
    path = save(authors_state(ours, pre_0_4=pre_0_4), tmp_path / "latest_net_G_A.pth", legacy=pre_0_4)

    loaded, spec = load_authors_generator(path)

    assert spec == GeneratorSpec(config, input_nc=3, output_nc=1 if "unet" in name else 3)
    assert not loaded.training
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_pretrained_size_resnet9_ngf64(tmp_path):
    # The size of every published model: resnet_9blocks, ngf 64, instance norm, 3 -> 3.
    ours = random_net(build_generator(GeneratorConfig(), input_nc=3, output_nc=3))
    _, spec = load_authors_generator(save(authors_state(ours, pre_0_4=True), tmp_path / "horse2zebra.pth", legacy=True))
    assert spec == GeneratorSpec(GeneratorConfig(), input_nc=3, output_nc=3)
    assert spec.authors_options() == "--netG resnet_9blocks --ngf 64 --norm instance --no_dropout --input_nc 3 --output_nc 3"


def test_round_trip_ours_to_authors_layout_and_back(tmp_path):
    ours = random_net(build_generator(GeneratorConfig(ngf=8, n_blocks=4), input_nc=3, output_nc=3))
    state = authors_state_dict(ours)
    assert state.keys() == authors_state(ours).keys()  # exactly the names their modules have
    assert any(".conv_block." in k for k in state) and not any(".block." in k for k in state)
    loaded, spec = load_authors_generator(save(state, tmp_path / "g.pth"))
    assert spec.config == GeneratorConfig(ngf=8, n_blocks=4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_norm_none_cannot_be_written_in_their_layout():
    net = build_generator(GeneratorConfig(ngf=8, n_blocks=1, norm="none"), input_nc=3, output_nc=3)
    with pytest.raises(CheckpointError, match="norm 'none'"):
        authors_state_dict(net)


# --------------------------------------------------------------------------
# refusals: one line naming what did not match
# --------------------------------------------------------------------------


@pytest.fixture
def small_resnet_file(tmp_path):
    ours = random_net(build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3))
    return save(authors_state(ours), tmp_path / "g.pth"), authors_state(ours)


def refusal(path) -> str:
    with pytest.raises(CheckpointError) as error:
        load_authors_generator(path)
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, CycleGANError)
    return message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file_is_refused(tmp_path, legacy):
    ours = build_generator(GeneratorConfig(ngf=8, n_blocks=2), input_nc=3, output_nc=3)
    path = save(authors_state(ours), tmp_path / "g.pth", legacy=legacy)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert refusal(path).startswith(f"cannot read model file {path}: ")


@pytest.mark.parametrize("arch", ["patch", "pixel"])
def test_discriminator_file_is_refused_as_generator(tmp_path, arch):
    d = build_discriminator(DiscriminatorConfig(arch=arch, ndf=8), input_nc=3)
    message = refusal(save(authors_state(d), tmp_path / "latest_net_D_A.pth"))
    assert f"holds a {arch} discriminator" in message and "not a generator" in message


def test_wrong_shape_is_refused_naming_the_entry(small_resnet_file, tmp_path):
    _, state = small_resnet_file
    state["model.11.conv_block.5.weight"] = torch.zeros(16, 32, 3, 3)
    message = refusal(save(state, tmp_path / "bad.pth"))
    assert "'model.11.conv_block.5.weight' has shape [16, 32, 3, 3]" in message
    assert "resnet generator (2 blocks, ngf 8, instance norm, 3 -> 3 channels) needs [32, 32, 3, 3]" in message


def test_missing_and_unexpected_entries_are_refused(small_resnet_file, tmp_path):
    state = dict(small_resnet_file[1])
    del state["model.10.conv_block.1.bias"]
    assert "no 'model.10.conv_block.1.bias'" in refusal(save(state, tmp_path / "missing.pth"))
    state = dict(small_resnet_file[1])
    state["model.2.extra"] = torch.zeros(3)
    assert "unexpected 'model.2.extra'" in refusal(save(state, tmp_path / "extra.pth"))


def test_last_layers_missing_is_refused(small_resnet_file, tmp_path):
    _, state = small_resnet_file
    state = {k: v for k, v in state.items() if not k.startswith("model.19.")}  # the final 7x7 conv
    assert "needs a last layer 'model.19.weight'" in refusal(save(state, tmp_path / "cut.pth"))


@pytest.mark.parametrize(
    "obj, words",
    [([1, 2], "holds a list"), ({}, "holds an empty dict"), ({"state_dict": {}, "epoch": 3}, "training checkpoint"),
     ({"conv.weight": torch.zeros(3, 3, 3, 3)}, "is not a CycleGAN/pix2pix generator")],
)
def test_not_a_generator_state_dict_is_refused(tmp_path, obj, words):
    assert words in refusal(save(obj, tmp_path / "x.pth"))


def test_missing_file_is_refused(tmp_path):
    assert refusal(tmp_path / "nope.pth") == f"model file not found: {tmp_path / 'nope.pth'}"


# --------------------------------------------------------------------------
# discriminators
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [DiscriminatorConfig(ndf=8, n_layers=3), DiscriminatorConfig(ndf=16, n_layers=2, norm="batch"),
     DiscriminatorConfig(ndf=8, n_layers=5), DiscriminatorConfig(arch="pixel", ndf=8),
     DiscriminatorConfig(arch="pixel", ndf=16, norm="batch")],
    ids=["patch3", "patch2_batch", "patch5", "pixel", "pixel_batch"],
)
def test_discriminator_architecture_inferred(tmp_path, config):
    d = random_net(build_discriminator(config, input_nc=1))
    path = save(authors_state(d, pre_0_4=True), tmp_path / "latest_net_D_B.pth", legacy=True)
    spec = infer_discriminator(read_state_dict(path), source=str(path))
    assert spec.config == config and spec.input_nc == 1


# --------------------------------------------------------------------------
# a run folder of the authors' code: four networks, their D_A judges B
# --------------------------------------------------------------------------

G_CONFIG = GeneratorConfig(ngf=8, n_blocks=2)
D_CONFIG = DiscriminatorConfig(ndf=8, n_layers=2)


def four_nets(seed: int, *, g: GeneratorConfig = G_CONFIG, d: DiscriminatorConfig = D_CONFIG) -> dict[str, nn.Module]:
    # Domain A has 1 channel, B has 3: a swapped mapping cannot even load.
    nets = {
        "G_AB": build_generator(g, input_nc=1, output_nc=3), "G_BA": build_generator(g, input_nc=3, output_nc=1),
        "D_A": build_discriminator(d, input_nc=1), "D_B": build_discriminator(d, input_nc=3),
    }
    return {name: random_net(net, seed + i) for i, (name, net) in enumerate(nets.items())}


def write_run(folder, nets: dict[str, nn.Module], epoch="latest", *, pre_0_4=False):
    folder.mkdir(parents=True, exist_ok=True)
    for theirs, ours in RUN_NETWORKS.items():
        save(authors_state(nets[ours], pre_0_4=pre_0_4), folder / f"{epoch}_net_{theirs}.pth")
    return folder


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_folder_loads_all_four_networks_in_the_right_places(tmp_path):
    trained = four_nets(seed=10)
    folder = write_run(tmp_path / "checkpoints" / "horse2zebra", trained, pre_0_4=True)
    fresh = four_nets(seed=100)
    files = load_run(fresh, folder)
    assert files["D_B"].name == "latest_net_D_A.pth" and files["D_A"].name == "latest_net_D_B.pth"
    for name in fresh:
        assert same_weights(fresh[name], trained[name]), name


def test_run_folder_d_mapping_with_equal_channels_is_not_swapped(tmp_path):
    def nets(seed):
        return {
            "G_AB": random_net(build_generator(G_CONFIG, input_nc=3, output_nc=3), seed),
            "G_BA": random_net(build_generator(G_CONFIG, input_nc=3, output_nc=3), seed + 1),
            "D_A": random_net(build_discriminator(D_CONFIG, input_nc=3), seed + 2),
            "D_B": random_net(build_discriminator(D_CONFIG, input_nc=3), seed + 3),
        }
    trained = nets(20)
    folder = tmp_path / "run"
    folder.mkdir()
    # Written by hand, in their naming: their D_A is the one that judges domain B.
    for theirs, net in {"G_A": trained["G_AB"], "G_B": trained["G_BA"], "D_A": trained["D_B"], "D_B": trained["D_A"]}.items():
        save(authors_state(net), folder / f"15_net_{theirs}.pth")
    fresh = nets(200)
    load_run(fresh, folder, epoch=15)
    assert same_weights(fresh["D_A"], trained["D_A"]) and same_weights(fresh["D_B"], trained["D_B"])
    assert not same_weights(fresh["D_A"], trained["D_B"])


def test_run_folder_mismatch_is_refused_before_any_weight_changes(tmp_path):
    folder = write_run(tmp_path / "run", four_nets(seed=1, d=DiscriminatorConfig(ndf=16, n_layers=2)))
    fresh = four_nets(seed=2)
    before = {k: {n: t.clone() for n, t in v.state_dict().items()} for k, v in fresh.items()}
    with pytest.raises(CheckpointError) as error:
        load_run(fresh, folder)
    message = str(error.value)
    assert "\n" not in message
    assert "latest_net_D_A.pth (their D_A, our D_B): 'model.0.weight' has shape [16, 3, 4, 4]" in message
    assert "the configured D_B, a patch discriminator (ndf 8, 2 layers, instance norm, 3 channels) needs [8, 3, 4, 4]" in message
    assert "the file holds a patch discriminator (ndf 16, 2 layers" in message
    for name, net in fresh.items():
        assert all(torch.equal(net.state_dict()[n], t) for n, t in before[name].items()), name


def test_run_folder_missing_epoch_lists_saved_epochs(tmp_path):
    folder = write_run(tmp_path / "run", four_nets(seed=1), epoch=5)
    write_run(folder, four_nets(seed=1), epoch=10)
    with pytest.raises(CheckpointError, match=r"has no latest_net_G_A.pth, .* \(saved epochs here: 5, 10\)"):
        run_files(folder)
    assert run_files(folder, 10)["G_BA"].name == "10_net_G_B.pth"
    with pytest.raises(CheckpointError, match="is not a folder"):
        run_files(tmp_path / "nope")
