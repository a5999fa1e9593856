"""One generator as a Hugging Face Hub model folder: ``config.json``, ``model.safetensors``, ``README.md``.

    cyclegan export --checkpoint last.ckpt --direction a2b --format hf --output horse2zebra/
    cyclegan translate --checkpoint horse2zebra/ --input photos/ --output zebras/
    cyclegan translate --checkpoint hf:ORG/horse2zebra --input photos/ --output zebras/

``config.json`` holds everything needed to build the generator and feed it (:func:`folder_config`):
the architecture (the :class:`~cyclegan.models.networks.GeneratorConfig` fields, whatever they
are), direction, model kind, channels, stride, the training image size and the normalisation of
inputs and outputs. ``model.safetensors`` holds its weights under the generator's own names.
Writing goes through huggingface_hub's ``PyTorchModelHubMixin`` (:func:`cyclegan.inference.hub_model.save_folder`),
so that ``HubGenerator.from_pretrained`` reads the folder too; reading here
needs JSON and safetensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from cyclegan.errors import CheckpointError, first_line
from cyclegan.models.networks import GeneratorConfig, build_generator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)  # what a model folder holds: nothing else is uploaded or fetched
FORMAT = "cyclegan-generator"  # config.json's "format": marks a folder as ours
FORMAT_VERSION = 1
# [-1, 1] in, [-1, 1] out, for every generator of this package (cyclegan.data.images.to_tensor / to_uint8).
NORMALIZATION = {
    "input": {"layout": "NCHW", "dtype": "float32", "range": [-1.0, 1.0], "from_uint8": "x = p / 127.5 - 1",
              "mean": 0.5, "std": 0.5, "channels": "RGB (3) or grayscale (1), alpha composited onto white"},
    "output": {"layout": "NCHW", "range": [-1.0, 1.0], "to_uint8": "p = round((clamp(y, -1, 1) + 1) * 127.5)"},
}


def folder_config(metadata: Mapping[str, Any], **facts: Any) -> dict[str, Any]:
    """config.json for a generator described by ``metadata`` (a Translator's: kind, direction,
    input_nc, output_nc, stride, generator) and ``facts`` (``image_size``, ``preprocess``, ...)."""
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "library_name": "cyclegan",
        "kind": metadata["kind"], "direction": metadata["direction"], "generator": dict(metadata["generator"]),
        "input_nc": metadata["input_nc"], "output_nc": metadata["output_nc"], "stride": metadata["stride"],
        # the side of the training crops (Translator metadata calls it training_size); None: unknown or whole images
        "image_size": metadata.get("training_size", metadata.get("image_size")), "normalization": NORMALIZATION,
    }
    config.update({k: v for k, v in facts.items() if v is not None or k not in config})
    return config


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json, checked to be ours and complete; one line on any problem."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} is a folder without {CONFIG_NAME}: not a model folder "
                              "(write one with `cyclegan export --format hf`)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {first_line(e)}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} does not describe a cyclegan generator (no \"format\": \"{FORMAT}\")")
    missing = [k for k in ("kind", "direction", "generator", "input_nc", "output_nc") if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    if config.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(f"{path} is format version {config['format_version']}: upgrade cyclegan to read it")
    return config


def build_from_config(config: Mapping[str, Any], *, source: str | os.PathLike) -> nn.Module:
    """The untrained generator config.json describes; ``source`` names it in errors."""
    try:
        settings = GeneratorConfig(**config["generator"])
    except (TypeError, ValueError) as e:  # written by another version of cyclegan, or edited
        raise CheckpointError(f"{source}: generator settings this version cannot build ({first_line(e)})") from None
    return build_generator(settings, input_nc=config["input_nc"], output_nc=config["output_nc"])


def load_weights(net: nn.Module, weights: str | os.PathLike, *, config_path: str | os.PathLike) -> nn.Module:
    """Put ``weights`` (a safetensors file) into ``net``, refusing in one line a file whose tensors
    do not fit the generator ``config_path`` describes; ``net`` in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(os.fspath(weights), device="cpu")
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"cannot read {weights}: {first_line(e)}") from None
    wanted = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items()}
    differ = sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])
    missing, unexpected = sorted(wanted.keys() - saved.keys()), sorted(saved.keys() - wanted.keys())
    if differ or missing or unexpected:
        if differ:
            what = (f"{len(differ)} tensors differ in shape, e.g. {differ[0]} is {list(saved[differ[0]])} there and "
                    f"{list(wanted[differ[0]])} by the config")
        else:
            what = f"{len(missing)} tensors missing, {len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]}"
        raise CheckpointError(f"{config_path} does not match {weights}: {what}")
    net.load_state_dict(state)
    return net.eval()


def load_folder(folder: str | os.PathLike, direction: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The generator of a model folder (eval mode, CPU) and the Translator metadata for it.

    ``direction``: None for the folder's own; another one is refused (a folder holds one generator)."""
    folder = Path(folder)
    config = read_config(folder)
    if direction is not None and direction != config["direction"]:
        raise CheckpointError(f"{folder} holds the '{config['direction']}' generator, not '{direction}'")
    net = build_from_config(config, source=folder / CONFIG_NAME)
    stride = getattr(net, "stride", 1)
    if config.get("stride", stride) != stride:
        raise CheckpointError(f"{folder / CONFIG_NAME} says stride {config['stride']}, but its generator has {stride}")
    if not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}")
    load_weights(net, folder / WEIGHTS_NAME, config_path=folder / CONFIG_NAME)
    metadata = {**config, "stride": stride, "norm": config["generator"].get("norm", "none"),
                "training_size": config.get("image_size")}
    return net, metadata


def is_model_folder(path: str | os.PathLike) -> bool:
    """A folder that :func:`load_folder` would read (or refuse in one line): any directory."""
    return Path(path).is_dir()


# --------------------------------------------------------------------------- writing a folder in place


def temporary_folder(output: Path) -> Path:
    """An empty folder beside ``output`` to write into, renamed onto it by :func:`publish_folder`."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    except OSError as e:
        raise CheckpointError(f"cannot write to {output.parent}: {e.strerror or e}") from None


def check_replaceable(output: Path) -> None:
    """Refuse, before any work, an ``output`` that is a file or a folder holding anything but a model folder."""
    if output.is_file() or (output.exists() and not output.is_dir()):
        raise CheckpointError(f"--output {output} is a file; a model folder needs a folder name")
    if output.is_dir() and any(output.iterdir()) and not (output / CONFIG_NAME).is_file():
        raise CheckpointError(f"--output {output} is a folder holding other files; choose a new or empty folder "
                              "(a model folder written earlier is replaced)")


def publish_folder(tmp: Path, output: Path) -> None:
    """Move the finished folder ``tmp`` onto ``output``, replacing an earlier model folder there."""
    mask = _umask()
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it private
    for file in tmp.iterdir():  # as are the weights safetensors writes
        os.chmod(file, 0o666 & ~mask)
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    os.replace(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
