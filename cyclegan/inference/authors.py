"""The file formats of the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix, and the CUT
authors' taesungp/contrastive-unpaired-translation, whose antialiased generator adds blur layers
with ``filt`` buffers) <-> our networks:
reading any ``.pth`` their code saves (a published pretrained model, a run's ``latest_net_G_A.pth``)
and writing ours in their layout. Which models they published, and downloading them, is
:mod:`cyclegan.inference.pretrained`.

Their files are bare state dicts (``torch.save(net.state_dict(), "latest_net_G_A.pth")``),
so the architecture is read back from the keys and shapes. networks.py builds the same
layers in the same order, so the keys agree except for two names:

    ResNet generator's residual block    model.N.conv_block.M.*   (ours: model.N.block.M.*)
    pixel discriminator                  net.M.*                  (ours: model.M.*)

U-Net (``model.model.1.model.3...``) and PatchGAN keys are the same. Instance norm has no
parameters (``affine=False``); files saved before PyTorch 0.4 still carry its
``running_mean``/``running_var`` (and later ``num_batches_tracked``) buffers, which are
dropped, as the authors' loader does. Batch-norm files from before 0.4 lack
``num_batches_tracked``; it starts at 0.

A training run of theirs (``checkpoints/NAME/``) holds ``EPOCH_net_{G_A,G_B,D_A,D_B}.pth``
(``EPOCH`` a number or ``latest``). Their names map to ours as (their D_A judges domain B):

    G_A -> G_AB (A -> B)    G_B -> G_BA (B -> A)    D_A -> D_B    D_B -> D_A
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import torch
from torch import nn

from cyclegan.errors import CheckpointError, first_line
from cyclegan.models.networks import (
    DiscriminatorConfig, GeneratorConfig, PixelDiscriminator, ResnetGenerator, build_discriminator, build_generator,
)

StateDict = dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]

# Their network name in a run folder -> the attribute of our CycleGAN that takes it.
RUN_NETWORKS: dict[str, str] = {"G_A": "G_AB", "G_B": "G_BA", "D_A": "D_B", "D_B": "D_A"}

_INSTANCE_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------
# What a file holds
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator architecture with its channels: everything needed to build it."""

    config: GeneratorConfig
    input_nc: int
    output_nc: int

    def build(self) -> nn.Module:
        return build_generator(self.config, input_nc=self.input_nc, output_nc=self.output_nc)

    def describe(self) -> str:
        c = self.config
        size = f"{c.n_blocks} blocks" if c.arch == "resnet" else f"{c.n_downs} downsamplings"
        up = {"resize_conv": ", resize-conv upsampling", "antialias": ", antialiased upsampling"}.get(c.upsample, "")
        up = (", antialiased downsampling" if c.antialias else "") + up
        return f"{c.arch} generator ({size}, ngf {c.ngf}, {c.norm} norm{up}, {self.input_nc} -> {self.output_nc} channels)"

    def authors_options(self) -> str | None:
        """The options of the authors' ``test.py`` that build this generator, or None when
        their code has no such network (other block counts, resize-conv upsampling). Antialiased
        generators are the CUT authors' (``--model cut``); the others the CycleGAN authors'."""
        c = self.config
        if c.antialias or c.upsample == "antialias":
            return self._cut_options()
        names = {("resnet", 9): "resnet_9blocks", ("resnet", 6): "resnet_6blocks",
                 ("unet", 7): "unet_128", ("unet", 8): "unet_256"}
        net_g = names.get((c.arch, c.n_blocks if c.arch == "resnet" else c.n_downs))
        if net_g is None or c.upsample != "transpose" or c.norm == "none":
            return None
        dropout = "" if c.dropout else " --no_dropout"
        return f"--netG {net_g} --ngf {c.ngf} --norm {c.norm}{dropout} --input_nc {self.input_nc} --output_nc {self.output_nc}"


    def _cut_options(self) -> str | None:
        c = self.config
        net_g = {9: "resnet_9blocks", 6: "resnet_6blocks", 4: "resnet_4blocks"}.get(c.n_blocks)
        if c.arch != "resnet" or net_g is None or c.upsample == "resize_conv" or c.norm == "none":
            return None
        flags = [f"--model cut --netG {net_g} --ngf {c.ngf} --normG {c.norm}"]
        flags += [] if c.antialias else ["--no_antialias"]
        flags += [] if c.upsample == "antialias" else ["--no_antialias_up"]
        flags += ["--no_dropout False"] if c.dropout else []
        return " ".join([*flags, f"--input_nc {self.input_nc} --output_nc {self.output_nc}"])


@dataclass(frozen=True)
class DiscriminatorSpec:
    config: DiscriminatorConfig
    input_nc: int

    def build(self) -> nn.Module:
        return build_discriminator(self.config, input_nc=self.input_nc)

    def describe(self) -> str:
        c = self.config
        layers = f", {c.n_layers} layers" if c.arch == "patch" else ""
        return f"{c.arch} discriminator (ndf {c.ndf}{layers}, {c.norm} norm, {self.input_nc} channels)"


# --------------------------------------------------------------------------
# Reading a file
# --------------------------------------------------------------------------


def is_state_dict(obj: object) -> bool:
    """Whether ``obj`` is a bare ``{name: tensor}`` dict, as the authors' code saves."""
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def load_file(path: PathLike, *, what: str = "model file") -> object:
    """``torch.load`` onto the CPU, tensors and plain data only; one-line errors naming ``what`` it is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        reason = first_line(e)
        raise CheckpointError(f"cannot read {what} {path}: {reason} (truncated or not a PyTorch file?)") from None


def as_state_dict(obj: object, *, source: str) -> StateDict:
    """``obj`` as a state dict with our key names (DataParallel's ``module.`` prefix removed)."""
    if not is_state_dict(obj):
        if isinstance(obj, dict) and "state_dict" in obj:
            raise CheckpointError(f"{source} is a training checkpoint, not a bare network state dict")
        what = "an empty dict" if obj == {} else f"a {type(obj).__name__}"
        raise CheckpointError(f"{source} holds {what}, not a network state dict ({{name: tensor}})")
    state: StateDict = dict(obj)  # type: ignore[arg-type]
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {_our_key(k): v for k, v in state.items()}


def read_state_dict(path: PathLike) -> StateDict:
    """The state dict stored at ``path``, with our key names."""
    return as_state_dict(load_file(path), source=str(path))


def _our_key(key: str) -> str:
    key = re.sub(r"^model\.(\d+)\.conv_block\.", r"model.\1.block.", key)
    return re.sub(r"^net\.", "model.", key)


def _their_key(key: str, net: nn.Module) -> str:
    if isinstance(net, ResnetGenerator):
        return re.sub(r"^model\.(\d+)\.block\.", r"model.\1.conv_block.", key)
    if isinstance(net, PixelDiscriminator):
        return re.sub(r"^model\.", "net.", key)
    return key


# --------------------------------------------------------------------------
# Architecture from keys and shapes (our key names)
# --------------------------------------------------------------------------


def network_architecture(state: StateDict) -> str | None:
    """The ``arch`` of the network a state dict holds, from its first layer: "resnet" or "unet"
    (a generator), "patch" or "pixel" (a discriminator); None if none fits."""
    if "model.model.0.weight" in state:
        return "unet"
    first = state.get("model.1.weight")
    if first is not None and first.ndim == 4 and first.shape[-1] == 7:  # ReflectionPad2d(3), 7x7 conv
        return "resnet"
    first = state.get("model.0.weight")
    if first is not None and first.ndim == 4 and first.shape[-1] in (1, 4):
        return "pixel" if first.shape[-1] == 1 else "patch"
    return None


def infer_generator(state: StateDict, *, source: str) -> GeneratorSpec:
    """The generator architecture a state dict was saved from; CheckpointError if none."""
    arch = network_architecture(state)
    if arch in ("patch", "pixel"):
        raise CheckpointError(
            f"{source} holds a {arch} discriminator (as in *_net_D_A.pth), not a generator; "
            "pass a generator file (*_net_G_A.pth or *_net_G_B.pth)"
        )
    if arch is None:
        raise CheckpointError(
            f"{source} is not a CycleGAN/pix2pix generator: it has neither a ResNet first layer "
            "('model.1.weight', 7x7) nor a U-Net one ('model.model.0.weight')"
        )
    if arch == "resnet":
        return _infer_resnet(state, source)
    return _infer_unet(state, source)


def _infer_resnet(state: StateDict, source: str) -> GeneratorSpec:
    # Layers: pad, conv7 (1), norm (2), relu, 2x [conv3 s2, norm, relu] (4..9), blocks (10..),
    # 2x [up, norm, relu], pad, conv7, tanh. The CUT authors' antialiased layout adds a blur
    # ('filt') after each downsampling conv (7, 11: blocks from 12) and before each upsampling one.
    ngf, input_nc = state["model.1.weight"].shape[:2]
    antialias = "model.7.filt" in state
    first_block = 12 if antialias else 10
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.block\.", k))}
    n_blocks = len(blocks)
    first_up = first_block + n_blocks
    if f"model.{first_up}.filt" in state:
        upsample, up_layers = "antialias", 4  # blur, conv3, norm, relu
    elif f"model.{first_up}.weight" in state:
        upsample, up_layers = "transpose", 3
    elif f"model.{first_up}.2.weight" in state:
        upsample, up_layers = "resize_conv", 3
    else:
        raise CheckpointError(f"{source}: a resnet generator with {n_blocks} blocks needs an upsampling layer 'model.{first_up}.weight'; the file has none")
    last = f"model.{first_up + 2 * up_layers + 1}.weight"
    if last not in state:
        raise CheckpointError(f"{source}: a resnet generator with {n_blocks} blocks needs a last layer '{last}'; the file has none")
    config = GeneratorConfig(
        arch="resnet", ngf=int(ngf), n_blocks=n_blocks, norm="batch" if "model.2.weight" in state else "instance",
        dropout=f"model.{first_block}.block.6.weight" in state,  # Dropout after the first ReLU shifts the second conv
        upsample=upsample, antialias=antialias,
    )
    return GeneratorSpec(config, input_nc=int(input_nc), output_nc=int(state[last].shape[0]))


def _infer_unet(state: StateDict, source: str) -> GeneratorSpec:
    # Outermost block: [down conv (0), inner block (1), relu, up (3), tanh]; each inner block:
    # [lrelu, down conv (1), norm (2), inner block (3), relu, up, norm] (innermost: no 2, 3).
    ngf, input_nc = state["model.model.0.weight"].shape[:2]
    n_downs, prefix = 1, "model.model.1"
    while f"{prefix}.model.1.weight" in state:
        n_downs, prefix = n_downs + 1, prefix + ".model.3"
    if "model.model.3.weight" in state:  # ConvTranspose2d weight: (in, out, 4, 4)
        upsample, output_nc = "transpose", state["model.model.3.weight"].shape[1]
    elif "model.model.3.2.weight" in state:  # Conv2d weight: (out, in, 3, 3)
        upsample, output_nc = "resize_conv", state["model.model.3.2.weight"].shape[0]
    else:
        raise CheckpointError(f"{source}: a unet generator needs a last layer 'model.model.3.weight'; the file has none")
    if n_downs < 5:
        raise CheckpointError(f"{source}: a unet generator has at least 5 levels; the file has {n_downs}")
    config = GeneratorConfig(
        arch="unet", ngf=int(ngf), n_downs=n_downs, norm="batch" if "model.model.1.model.2.weight" in state else "instance",
        upsample=upsample,
    )
    return GeneratorSpec(config, input_nc=int(input_nc), output_nc=int(output_nc))


def infer_discriminator(state: StateDict, *, source: str) -> DiscriminatorSpec:
    """The discriminator architecture a state dict was saved from; CheckpointError if none."""
    arch = network_architecture(state)
    if arch not in ("patch", "pixel"):
        what = f"a {arch} generator" if arch else "no known network"
        raise CheckpointError(f"{source} holds {what}, not a discriminator")
    ndf, input_nc = state["model.0.weight"].shape[:2]
    norm = "batch" if "model.3.weight" in state else "instance"
    n_convs = sum(1 for k, v in state.items() if k.endswith(".weight") and v.ndim == 4)
    config = DiscriminatorConfig(arch=arch, ndf=int(ndf), n_layers=max(n_convs - 2, 0) if arch == "patch" else 3, norm=norm)
    return DiscriminatorSpec(config, input_nc=int(input_nc))


# --------------------------------------------------------------------------
# Loading into a network, writing from one
# --------------------------------------------------------------------------


def fit_state_dict(net: nn.Module, state: StateDict, *, source: str, expected: str) -> StateDict:
    """``state`` made loadable into ``net`` (old instance-norm buffers dropped, a missing
    batch-norm ``num_batches_tracked`` set to 0), or CheckpointError naming the first
    entry that does not fit. ``expected`` describes ``net`` for that message."""
    modules = dict(net.named_modules())
    state = {
        k: v for k, v in state.items()
        if not (k.rpartition(".")[2] in _INSTANCE_NORM_BUFFERS and isinstance(modules.get(k.rpartition(".")[0]), nn.InstanceNorm2d))
    }
    target = net.state_dict()
    for key, value in target.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)

    def more(keys: list[str]) -> str:
        return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""

    missing = [k for k in target if k not in state]
    if missing:
        raise CheckpointError(f"{source}: no '{_their_key(missing[0], net)}'{more(missing)} for {expected}")
    unexpected = [k for k in state if k not in target]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected '{_their_key(unexpected[0], net)}'{more(unexpected)} for {expected}")
    for key, value in target.items():
        if state[key].shape != value.shape:
            raise CheckpointError(
                f"{source}: '{_their_key(key, net)}' has shape {list(state[key].shape)}, {expected} needs {list(value.shape)}"
            )
    return state


def generator_from_state_dict(state: StateDict, *, source: str) -> tuple[nn.Module, GeneratorSpec]:
    """Build the generator ``state`` describes and load it; in eval mode, on the CPU."""
    spec = infer_generator(state, source=source)
    net = spec.build()
    net.load_state_dict(fit_state_dict(net, state, source=source, expected=f"a {spec.describe()}"))
    return net.eval(), spec


def load_authors_generator(path: PathLike) -> tuple[nn.Module, GeneratorSpec]:
    """The generator in an authors'-layout file (e.g. ``horse2zebra.pth``, ``latest_net_G_A.pth``)."""
    return generator_from_state_dict(read_state_dict(path), source=str(path))


def single_generator(state: object, path: PathLike, direction: str | None = None) -> tuple[nn.Module, GeneratorSpec]:
    """The generator of an authors'-layout file that ``torch.load`` gave as ``state``.

    Such a file holds one generator, which maps its own input domain to its output domain:
    ``direction`` None or "a2b" is that one; "b2a" is refused (it is in the partner file).
    """
    if direction not in (None, "a2b"):
        raise CheckpointError(
            f"{path} holds a single generator, so it has no '{direction}' direction; use the file of the "
            "other direction (latest_net_G_B.pth beside latest_net_G_A.pth, zebra2horse for horse2zebra)"
        )
    return generator_from_state_dict(as_state_dict(state, source=str(path)), source=str(path))


def authors_state_dict(net: nn.Module) -> StateDict:
    """``net``'s state dict in the authors' layout: their ``load_state_dict`` takes it."""
    norms = (nn.InstanceNorm2d, nn.BatchNorm2d)
    if not any(isinstance(m, norms) for m in net.modules()):
        raise CheckpointError(
            "a network with norm 'none' cannot be written in the authors' layout: "
            "their files record no architecture and it would read back as instance norm"
        )
    return {_their_key(k, net): v.detach().clone() for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------
# A training run of the authors' code: four networks
# --------------------------------------------------------------------------


def run_files(folder: PathLike, epoch: str | int = "latest") -> dict[str, Path]:
    """Our network name -> the file of a run folder that holds it, for one saved epoch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder (expected a checkpoint folder of the authors' code)")
    files = {ours: folder / f"{epoch}_net_{theirs}.pth" for theirs, ours in RUN_NETWORKS.items()}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        epochs = sorted(
            {p.name.split("_net_")[0] for p in folder.glob("*_net_G_A.pth")}, key=lambda e: (not e.isdigit(), e.zfill(9))
        )
        found = f"saved epochs here: {', '.join(epochs)}" if epochs else "no *_net_G_A.pth at all"
        raise CheckpointError(f"{folder} has no {', '.join(missing)} ({found})")
    return files


def load_run(nets: Mapping[str, nn.Module], folder: PathLike, epoch: str | int = "latest") -> dict[str, Path]:
    """Load the four networks of an authors' run into ``nets`` (keys G_AB, G_BA, D_A, D_B).

    Every file is read and checked against its network before any weight changes, so a
    mismatch leaves ``nets`` untouched. Returns the files used, by our network name.
    """
    files = run_files(folder, epoch)
    fitted: dict[str, StateDict] = {}
    for theirs, ours in RUN_NETWORKS.items():
        path, net = files[ours], nets[ours]
        state = read_state_dict(path)
        source = f"{path} (their {theirs}, our {ours})"
        try:
            fitted[ours] = fit_state_dict(net, state, source=source, expected=f"the configured {ours}, {_describe(net.state_dict())}")
        except CheckpointError as e:
            raise CheckpointError(f"{e}; the file holds {_describe(state)}") from None
    for ours, state in fitted.items():
        nets[ours].load_state_dict(state)
    return files


def _describe(state: StateDict) -> str:
    """"a resnet generator (9 blocks, ...)" for a state dict with our key names."""
    try:
        if network_architecture(state) in ("patch", "pixel"):
            return f"a {infer_discriminator(state, source='').describe()}"
        return f"a {infer_generator(state, source='').describe()}"
    except CheckpointError:
        return "no known architecture"
