"""Exporting a trained generator to TorchScript or ONNX, with a parity check, and loading it back.

    cyclegan export --checkpoint last.ckpt --direction a2b --format onnx --output horse2zebra.onnx
    cyclegan translate --checkpoint horse2zebra.onnx --input photos/ --output zebras/

Height, width and batch are dynamic (multiples of the generator's stride). What the
translator needs besides the graph (channels, stride, direction, norm) travels inside
the file: TorchScript ``_extra_files["cyclegan.json"]``, ONNX ``metadata_props``.
ONNX needs the optional extra: ``pip install 'cyclegan[onnx]'`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .checkpoint import CheckpointError, fail, load_generator, read_checkpoint, sha256_file
from .data import DataError, list_images
from .translate import Translator, prepare_image, publish, to_tensor

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
DEFAULT_TOLERANCE = {"torchscript": 1e-4, "onnx": 1e-3}
_META_KEY = "cyclegan.json"


def is_exported(path: Path) -> bool:
    """An ONNX file, or a TorchScript archive (a zip with compiled ``code/``; ``torch.save`` checkpoints have none)."""
    if path.suffix.lower() == ".onnx":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_checkpoint_generator(path: str | os.PathLike, direction: str) -> tuple[nn.Module, dict]:
    """The generator of a training checkpoint for ``direction`` and the metadata an export carries."""
    net = load_generator(path, direction)
    meta = read_checkpoint(path)["translator"]
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    metadata = {
        "kind": meta["kind"], "direction": direction, "input_nc": convs[0].in_channels,
        "output_nc": convs[-1].out_channels, "stride": getattr(net, "stride", 1), "generator": meta["generator"],
        "norm": meta["generator"]["norm"], "checkpoint_sha256": sha256_file(path),
    }
    return net, metadata


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
        torch.jit.save(scripted, str(path), _extra_files={_META_KEY: json.dumps(metadata)})


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
    program.model.metadata_props[_META_KEY] = json.dumps(metadata)
    program.save(str(path), external_data=False)  # one self-contained file


class _OnnxNet:
    """An onnxruntime session as a tensor -> tensor function."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (y,) = self.session.run(None, {"input": x.detach().float().cpu().numpy()})
        return torch.from_numpy(y)


def load_exported(
    path: str | os.PathLike, *, direction: str | None = None, device: str | torch.device = "cpu",
    precision: str | None = "32",
) -> Translator:
    """A :class:`Translator` running an exported .pt (TorchScript) or .onnx file."""
    path = Path(path)
    if precision not in (None, "32"):
        raise CheckpointError(f"{path}: exported models run in float32; --precision {precision} needs the checkpoint")
    try:
        if path.suffix.lower() == ".onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                raise CheckpointError("running .onnx files needs onnxruntime: pip install 'cyclegan[onnx]'") from None
            net = _OnnxNet(path, torch.device(device))
            metadata = net.session.get_modelmeta().custom_metadata_map.get(_META_KEY)
            device = "cpu"  # onnxruntime takes and returns host memory
        else:
            extra = {_META_KEY: ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
            metadata = extra[_META_KEY] or None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - each runtime has its own error types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read exported model {path}: {reason}") from None
    if metadata is None:
        raise CheckpointError(f"{path} was not exported by `cyclegan export` (no {_META_KEY} metadata)")
    meta = json.loads(metadata)
    if direction is not None and direction != meta["direction"]:
        raise CheckpointError(f"{path} holds the '{meta['direction']}' generator, not '{direction}'")
    return Translator(
        net, input_nc=meta["input_nc"], output_nc=meta["output_nc"], stride=meta["stride"], device=device,
        instance_norm=meta["norm"] == "instance", metadata=meta,
    )


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cyclegan export",
        description="Export one generator of a training checkpoint with dynamic height and width, then check that "
        "the exported model matches PyTorch.",
    )
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b", help="which generator (default a2b)")
    p.add_argument("--format", dest="fmt", choices=list(FORMATS), required=True,
                   help="torchscript (.pt, runs with torch alone) or onnx (needs the onnx extra)")
    p.add_argument("--output", required=True, type=Path,
                   help="file to write; name it .pt / .onnx so that `cyclegan translate` recognises it")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest allowed |exported - PyTorch| (default 1e-4 torchscript, 1e-3 onnx)")
    p.add_argument("--images", type=Path, default=None,
                   help="also compare on the first 4 images of this folder (default: random inputs only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tolerance = DEFAULT_TOLERANCE[args.fmt] if args.tolerance is None else args.tolerance
    output: Path = args.output
    try:
        net, metadata = load_checkpoint_generator(args.checkpoint, args.direction)
        try:
            images = list_images(args.images)[:4] if args.images is not None else []
        except DataError as e:
            raise CheckpointError(str(e)) from None
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            # The suffix tells load_exported what it holds, whatever OUTPUT is called.
            fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.tmp-", suffix=FORMATS[args.fmt])
            os.close(fd)
        except OSError as e:
            raise CheckpointError(f"cannot write to {output.parent}: {e.strerror or e}") from None
        try:
            exporter = export_onnx if args.fmt == "onnx" else export_torchscript
            exporter(net, Path(tmp), metadata=metadata)
            difference = max_difference(load_exported(tmp), net, images=images)
        except BaseException:
            os.unlink(tmp)
            raise
    except CheckpointError as e:
        return fail(e)
    (h1, w1), (h2, w2) = _sizes(metadata["stride"])[1:]
    on_images = f" and {len(images)} images" if images else ""
    print(f"parity: max |{args.fmt} - pytorch| = {difference:.2e} on random {h1}x{w1} and {h2}x{w2} inputs"
          f"{on_images} (tolerance {tolerance:.0e})")
    if not difference <= tolerance:  # also catches NaN
        os.unlink(tmp)  # only a file that passed the check becomes OUTPUT
        print(f"error: the exported model differs from PyTorch by {difference:.2e} > {tolerance:.0e}; "
              f"{output} not written", file=sys.stderr)
        return 1
    publish(tmp, output)
    print(f"wrote {output} ({args.fmt}, {metadata['direction']}, {metadata['input_nc']}->{metadata['output_nc']} "
          f"channels, height and width multiples of {metadata['stride']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
