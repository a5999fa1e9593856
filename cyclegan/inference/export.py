"""Exporting a trained generator to TorchScript, ONNX, the authors' layout or a Hugging Face model
folder, with a parity check.

    cyclegan export --checkpoint last.ckpt --direction a2b --format onnx --output horse2zebra.onnx
    cyclegan translate --checkpoint horse2zebra.onnx --input photos/ --output zebras/

``--format pth`` writes a bare state dict in the layout of the authors' code (see
:mod:`cyclegan.inference.authors`), which their ``test.py`` loads; it carries no metadata: the
architecture is read back from its keys and shapes.

Height, width and batch are dynamic (multiples of the generator's stride). What the
translator needs besides the graph (channels, stride, direction, norm) travels inside
the file (read back by :func:`cyclegan.inference.translator.load_exported`): TorchScript
``_extra_files["cyclegan.json"]``, ONNX ``metadata_props``.
ONNX needs the optional extra: ``pip install 'cyclegan[onnx]'`` (onnx, onnxscript, onnxruntime).

``--format hf`` writes a folder instead (:mod:`cyclegan.inference.hub`): ``model.safetensors``,
``config.json`` and a model card whose facts come from the training checkpoint and its run folder
(:mod:`cyclegan.inference.model_card`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from cyclegan.inference import hub
from cyclegan.inference.checkpoints import read_model_file, sha256_file
from cyclegan.inference.model_card import card_fields, training_facts
from cyclegan.training.state import TRANSLATOR
from cyclegan.errors import CheckpointError, DataError
from cyclegan.data.images import list_images, prepare_image, publish, to_tensor
from cyclegan.inference.authors import authors_state_dict
from cyclegan.inference.translator import EXPORT_META_KEY, Translator, load_exported, load_translator

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "pth": ".pth", "hf": ""}  # hf: a folder
# pth, hf: the same weights, the same arithmetic
DEFAULT_TOLERANCE = {"torchscript": 1e-4, "onnx": 1e-3, "pth": 1e-6, "hf": 1e-6}


def load_checkpoint_generator(path: str | os.PathLike, direction: str | None) -> tuple[nn.Module, dict]:
    """The generator of a training checkpoint for ``direction`` and the metadata an export carries."""
    return _load_generator(path, direction)[:2]


def _load_generator(path: str | os.PathLike, direction: str | None) -> tuple[nn.Module, dict, Path]:
    """:func:`load_checkpoint_generator`, and the file it was read from (for a model folder: its weights)."""
    translator = load_translator(path, direction, device="cpu")
    if translator.module is None:
        raise CheckpointError(f"{path} is an exported model; export from its training checkpoint")
    metadata = {**translator.metadata, "checkpoint_sha256": sha256_file(translator.path)}
    return translator.module, metadata, translator.path


def _sizes(stride: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """An example size to export at and two other sizes to check at, all multiples of the stride.

    Multipliers of at least 2: the exporter would specialise a dimension whose example is 1.
    """
    a = max(2, -(-48 // stride))
    return (stride * (a + 1), stride * (a + 2)), (stride * a, stride * (a + 2)), (stride * (a + 3), stride * a)


def export_torchscript(net: nn.Module, path: Path, *, metadata: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, but still the way to a .pt
        scripted = torch.jit.script(net)
        torch.jit.save(scripted, str(path), _extra_files={EXPORT_META_KEY: json.dumps(metadata)})


def export_pth(net: nn.Module, path: Path, *, metadata: dict) -> None:
    torch.save(authors_state_dict(net), path)  # the authors' layout has no room for metadata


def export_onnx(net: nn.Module, path: Path, *, metadata: dict) -> None:
    try:
        import onnxscript  # noqa: F401 - the exporter needs it
    except ImportError:
        raise CheckpointError("ONNX export needs the onnx extra: pip install 'cyclegan[onnx]'") from None
    stride, (h, w) = metadata["stride"], _sizes(metadata["stride"])[0]
    batch = torch.export.Dim("batch", min=1)
    height, width = torch.export.Dim("height", min=1), torch.export.Dim("width", min=1)
    example = torch.rand(2, metadata["input_nc"], h, w) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, (example,), input_names=["input"], output_names=["output"], dynamo=True, verbose=False,
            dynamic_shapes=({0: batch, 2: stride * height, 3: stride * width},),
        )
    program.model.metadata_props[EXPORT_META_KEY] = json.dumps(metadata)
    program.save(str(path), external_data=False)  # one self-contained file


def max_difference(exported: Translator, net: nn.Module, *, images: list[Path] = (), seed: int = 0) -> float:
    """Largest |exported - PyTorch| over random inputs at two sizes (so the dynamic height and width are
    used) and over ``images`` (any size: padded to the stride and cropped back, as translate does)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in _sizes(exported.stride)[1:]:
        x = torch.rand(2, exported.input_nc, h, w, generator=generator) * 2 - 1
        with torch.inference_mode():
            expected = net(x)
        worst = max(worst, (exported.forward(x).cpu() - expected).abs().max().item())
    reference = Translator.from_module(net)
    for path in images:
        with Image.open(path) as image:
            x = to_tensor([prepare_image(image, channels=exported.input_nc)[0]])
        worst = max(worst, (exported.translate(x).cpu() - reference.translate(x).cpu()).abs().max().item())
    return worst


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx, "pth": export_pth}


@dataclass(frozen=True)
class ExportResult:
    """What an export did: ``written`` only when the parity check passed."""

    output: Path
    fmt: str
    metadata: dict
    difference: float  # largest |exported - PyTorch|
    tolerance: float
    check_sizes: tuple[tuple[int, int], tuple[int, int]]  # the random inputs' (height, width)
    n_images: int  # real images compared besides them
    written: bool


@dataclass(frozen=True)
class CardOptions:
    """What a model folder's card says beyond the checkpoint: where it is published and its licence."""

    repo_id: str | None = None  # ORG/NAME on the Hub: the card's usage says hf:ORG/NAME
    license: str | None = None  # a Hub licence id (default: model_card.DEFAULT_LICENSE)
    ref: str | None = None  # else how the card's usage names it (default: the output folder)
    name: str | None = None  # the card's title (default: the repository, else the folder's name)


def folder_contents(source: Path, metadata: dict, output: Path, card: CardOptions) -> tuple[dict, dict]:
    """config.json and model card fields for the generator of ``source`` (the file or folder it was
    loaded from) described by ``metadata``; a training checkpoint adds its facts and its run's."""
    facts: dict = {"checkpoint_sha256": metadata["checkpoint_sha256"]}
    checkpoint = read_model_file(source) if metadata.get("format") != hub.FORMAT else {}  # not a model folder
    if TRANSLATOR in checkpoint:  # a training checkpoint (not an authors' state dict)
        facts.update(training_facts(checkpoint, source, metadata["direction"]))
    config = hub.folder_config(metadata, image_size=facts.get("image_size"),
                               preprocess=facts.get("preprocess", metadata.get("preprocess")))
    return config, card_fields(config, facts, repo_id=card.repo_id, license=card.license,
                               where=card.ref or str(output), name=card.name)


def _temporary(output: Path, fmt: str) -> Path:
    """A fresh file (a folder for hf) beside ``output``, published onto it once the parity check passed."""
    if fmt == "hf":
        hub.check_replaceable(output)
        return hub.temporary_folder(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        # The suffix tells load_exported what it holds, whatever OUTPUT is called.
        fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.tmp-", suffix=FORMATS[fmt])
        os.close(fd)
    except OSError as e:
        raise CheckpointError(f"cannot write to {output.parent}: {e.strerror or e}") from None
    return Path(tmp)


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def export_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike, *, fmt: str, direction: str | None = None,
    tolerance: float | None = None, images: str | os.PathLike | None = None, card: CardOptions | None = None,
) -> ExportResult:
    """Export one generator of ``checkpoint`` to ``output`` if it matches PyTorch within ``tolerance``
    (default per format), also on the first 4 images of the folder ``images``. Only a file (for
    ``hf`` a folder) that passed the check becomes ``output``. Raises :class:`CheckpointError`
    when it cannot export. ``card``: the model card's repository and licence (``hf`` only)."""
    tolerance = DEFAULT_TOLERANCE[fmt] if tolerance is None else tolerance
    output = Path(output)
    net, metadata, source = _load_generator(checkpoint, direction)
    try:
        files = list_images(images)[:4] if images is not None else []
    except DataError as e:
        raise CheckpointError(str(e)) from None
    tmp = _temporary(output, fmt)
    try:
        if fmt == "hf":
            config, fields = folder_contents(source, metadata, output, card or CardOptions())
            from cyclegan.inference.hub_model import save_folder  # huggingface_hub: only for hf

            save_folder(net, tmp, config=config, card=fields)
            exported = load_translator(tmp, device="cpu")
        else:
            EXPORTERS[fmt](net, tmp, metadata=metadata)
            exported = load_translator(tmp, device="cpu") if fmt == "pth" else load_exported(tmp)
        difference = max_difference(exported, net, images=files)
    except BaseException:
        _remove(tmp)
        raise
    written = difference <= tolerance  # False also for NaN
    if written:
        (hub.publish_folder if fmt == "hf" else publish)(tmp, output)
    else:
        _remove(tmp)
    return ExportResult(output, fmt, metadata, difference, tolerance, _sizes(metadata["stride"])[1:], len(files), written)
