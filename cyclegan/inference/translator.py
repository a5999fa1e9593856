"""The one translator: a generator from a training checkpoint or an exported file, and
translating one PIL image or one tensor with it (folders: :mod:`cyclegan.inference.convert`).

Rules, the same for the Python API and ``cyclegan translate``:
- the checkpoint alone gives architecture, norm, channels and stride;
- full resolution by default: the image is reflection-padded to the generator's stride,
  translated and cropped back (``resize`` scales the short side first);
- EXIF orientation is applied; transparent images are composited onto white as in
  training and their alpha channel is put back unchanged on the output;
- images over ``max_pixels`` (or that run out of memory) are translated in overlapping
  tiles normalised with whole-image instance-norm statistics (see :mod:`cyclegan.inference.tiling`);
  exported instance-norm models have no layers to take those statistics from, so they
  always run whole images.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import nn

from cyclegan.inference.checkpoints import generator_from_checkpoint, read_model_file
from cyclegan.devices import inference_precision, resolve_device
from cyclegan.errors import CheckpointError, TranslateError, first_line
from cyclegan.data.images import finish_image, prepare_image, to_numpy_images, to_tensor
from cyclegan.inference.remote import resolve
from cyclegan.inference.hub import WEIGHTS_NAME, is_model_folder, load_folder
from cyclegan.inference.authors import is_state_dict, single_generator
from cyclegan.inference.tiling import NormStats, reflect_pad, round_up, tiled_forward

Precision = Literal["32", "bf16"]
DEFAULT_MAX_PIXELS = 2048 * 2048  # larger images are tiled
DEFAULT_TILE = 1024
# Long side of the pass that records instance-norm statistics for tiles: exact (the whole image)
# for anything up to this size, a downscaled approximation beyond.
DEFAULT_STATS_SIZE = 2048
EXPORT_META_KEY = "cyclegan.json"  # what an exported file carries besides the graph

class Translator:
    """A generator, loaded from a training checkpoint or an exported file, with its device and precision.

    ``forward`` maps (N, input_nc, H, W) in [-1, 1], H and W multiples of ``stride``, to
    (N, output_nc, H, W) in [-1, 1] on the translator's device; :meth:`translate` takes any
    size. ``module`` is the PyTorch generator when there is one: tiling an instance-norm
    model needs its layers.
    """

    def __init__(
        self, net: Callable[[torch.Tensor], torch.Tensor], *, input_nc: int, output_nc: int, stride: int,
        device: torch.device | str = "cpu", precision: Precision = "32", module: nn.Module | None = None,
        instance_norm: bool = False, metadata: dict | None = None, path: Path | None = None,
        inverse: Translator | None = None,
    ) -> None:
        if precision not in ("32", "bf16"):
            raise TranslateError(f"precision must be 32 or bf16, got {precision!r}")
        self.net, self.module = net, module
        self.input_nc, self.output_nc, self.stride = input_nc, output_nc, stride
        self.device, self.precision = torch.device(device), precision
        self.stats = NormStats(module) if module is not None and instance_norm else None
        # Instance norm without access to its layers (an exported file) would make tiles differ in brightness.
        self.can_tile = self.stats is not None or not instance_norm
        self.metadata = metadata or {}  # kind, direction, channels, stride, generator config, norm
        self.path = path  # the file it was loaded from, if any
        self.inverse = inverse  # the way back (CycleGAN checkpoints, when asked for): cycle consistency

    @property
    def kind(self) -> str:
        """"cyclegan", "method1", ... (from the file's metadata; "" for a bare module)."""
        return self.metadata.get("kind", "")

    @classmethod
    def from_module(
        cls, generator: nn.Module, *, device: torch.device | str | None = None, precision: Precision = "32",
        metadata: dict | None = None, path: Path | None = None,
    ) -> Translator:
        """Wrap a generator (moved to ``device``; by default it stays where its parameters are)."""
        convs = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if not convs:
            raise TranslateError(f"{type(generator).__name__} has no convolutions: not an image generator")
        if device is None:
            device = next(generator.parameters()).device
        generator.to(device)
        return cls(
            generator, input_nc=convs[0].in_channels, output_nc=convs[-1].out_channels,
            stride=getattr(generator, "stride", 1), device=device, precision=precision, module=generator,
            instance_norm=any(isinstance(m, nn.InstanceNorm2d) for m in generator.modules()), metadata=metadata,
            path=path,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.net(x.to(self.device)).float()

    def translate(
        self, x: torch.Tensor, *, tile: int | None = None, overlap: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, stats_size: int = DEFAULT_STATS_SIZE, tile_batch: int = 4,
    ) -> torch.Tensor:
        """(N, input_nc, h, w) in [-1, 1], any h and w -> (N, output_nc, h, w) on the translator's device.

        Pads by reflection to the stride and crops back. Tiles when ``tile`` is given, when
        h * w > ``max_pixels``, or when the whole image runs out of memory.
        """
        n, c, h, w = x.shape
        if c != self.input_nc:
            raise TranslateError(f"the generator takes {self.input_nc}-channel images, got {c} channels")
        # At least 8 px: a ResNet generator's last instance norm (at 1/4 scale) needs 2x2 values.
        H, W = round_up(max(h, 8), self.stride), round_up(max(w, 8), self.stride)
        top, left = (H - h) // 2, (W - w) // 2
        x = reflect_pad(x.float(), top, H - h - top, left, W - w - left)
        if tile is None and H * W > max_pixels and self.can_tile:
            tile = min(DEFAULT_TILE, math.isqrt(max_pixels))
        y = self._run(x, tile=tile, overlap=overlap, stats_size=stats_size, tile_batch=tile_batch)
        return y[:, :, top : top + h, left : left + w].to(self.device)

    def _run(self, x: torch.Tensor, *, tile: int | None, stats_size: int, **tiling) -> torch.Tensor:
        """Padded (N, C, H, W) -> (N, C_out, H, W); on out-of-memory, one image at a time, then tiles (on the CPU)."""
        if tile is not None:
            return torch.cat([self._tiled(x[i : i + 1], tile=tile, stats_size=stats_size, **tiling) for i in range(len(x))])
        try:
            return self.forward(x)
        except Exception as e:  # noqa: BLE001 - each backend raises out-of-memory as a different type
            if not _is_oom(e) or not (len(x) > 1 or self.can_tile):
                raise
        _free_memory()  # outside the except block, so that the failed pass's tensors are gone
        if len(x) > 1:
            return torch.cat([self._run(x[i : i + 1], tile=None, stats_size=stats_size, **tiling) for i in range(len(x))])
        # The whole image did not fit, so neither would a statistics pass at full size.
        half = max(x.shape[-2:]) // 2
        return self._run(x, tile=min(DEFAULT_TILE, half), stats_size=min(stats_size, half), **tiling)

    def _tiled(self, x: torch.Tensor, *, tile: int, overlap: int | None, stats_size: int, tile_batch: int) -> torch.Tensor:
        if not self.can_tile:
            raise TranslateError("tiling an instance-norm model needs its training checkpoint, not an exported file")
        stats_size = min(stats_size, max(x.shape[-2:]))
        while True:  # halve the tile and the statistics pass until they fit
            try:
                return tiled_forward(
                    self.forward, x, tile=tile, overlap=tile // 4 if overlap is None else overlap, stride=self.stride,
                    stats=self.stats, stats_size=stats_size, batch_size=tile_batch, device=self.device,
                )
            except Exception as e:  # noqa: BLE001
                if not _is_oom(e) or tile // 2 < max(self.stride, 64):
                    raise
            _free_memory()
            tile, stats_size = tile // 2, max(self.stride, stats_size // 2)


def _is_oom(e: Exception) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator and onnxruntime raise RuntimeErrors that say so.
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or any(
        s in text for s in ("out of memory", "can't allocate memory", "failed to allocate")
    )


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_translator(
    path: str | os.PathLike, direction: str | None = None, *, device: str | torch.device | None = None,
    precision: Precision | Literal["auto"] = "32",
    inverse: bool = False,
) -> Translator:
    """A :class:`Translator` from a training checkpoint, a TorchScript export (.pt), an ONNX export
    (.onnx), a generator file of the authors' code (.pth), ``pretrained:NAME``, a model folder
    (``cyclegan export --format hf``), ``hf:ORG/NAME[@REVISION]`` or ``wandb:ENTITY/PROJECT/NAME:ALIAS``.

    ``direction`` defaults to "a2b" for checkpoints and to the exported one for exports and model
    folders; a file of the authors' holds one generator, so only "a2b" (or None).
    ``inverse``: also load the other direction of a CycleGAN checkpoint as ``.inverse``.
    ``precision="auto"``: bf16 where the device has it natively (:mod:`cyclegan.devices`).
    The file is read once.
    """
    path = resolve(path)  # pretrained:, hf:, wandb: -> the cached file or folder, downloaded when missing
    device = resolve_device(device)
    if is_model_folder(path):  # config.json + model.safetensors: a PyTorch generator, tiles like a checkpoint's
        net, metadata = load_folder(path, direction)
        precision = inference_precision("auto", device) if precision == "auto" else precision
        return Translator.from_module(net, metadata=metadata, path=path / WEIGHTS_NAME, device=device,
                                      precision=precision)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    exported = is_exported(path)
    if precision == "auto":  # exported graphs run float32 only
        precision = "32" if exported else inference_precision("auto", device)
    if exported:
        return load_exported(path, direction=direction, device=device, precision=precision)
    checkpoint = read_model_file(path)
    if is_state_dict(checkpoint):
        net, spec = single_generator(checkpoint, path, direction)
        metadata = {
            "kind": "published", "direction": "a2b", "input_nc": spec.input_nc, "output_nc": spec.output_nc,
            "stride": getattr(net, "stride", 1), "generator": asdict(spec.config), "norm": spec.config.norm,
            "training_size": 256,  # the authors' code crops 256 px (its --crop_size default); their file does not say
        }
        return Translator.from_module(net, metadata=metadata, path=path, device=device, precision=precision)
    direction = direction or "a2b"
    back = {"a2b": "b2a", "b2a": "a2b"}[direction]
    other = None
    if inverse and back in checkpoint["translator"]["directions"]:
        other = _checkpoint_translator(checkpoint, path, back, device=device, precision=precision)
    translator = _checkpoint_translator(checkpoint, path, direction, device=device, precision=precision)
    translator.inverse = other
    return translator


def _checkpoint_translator(checkpoint: dict, path: Path, direction: str, **options) -> Translator:
    """One direction of a checkpoint read by :func:`cyclegan.inference.checkpoints.read_model_file`, in eval mode."""
    meta = checkpoint["translator"]
    net = generator_from_checkpoint(checkpoint, direction, path=path)
    in_nc, out_nc = (meta["output_nc"], meta["input_nc"]) if direction == "b2a" else (meta["input_nc"], meta["output_nc"])
    metadata = {
        "kind": meta["kind"], "direction": direction, "input_nc": in_nc, "output_nc": out_nc,
        "stride": getattr(net, "stride", 1), "generator": meta["generator"], "norm": meta["generator"]["norm"],
        "training_size": training_size(checkpoint),
    }
    return Translator.from_module(net, metadata=metadata, path=path, **options)


def training_size(checkpoint: dict) -> int | None:
    """The side of the images a checkpoint's generators were trained on (its data's ``crop_size``);
    None where training kept each image's own size (``preprocess: none``) or the file does not say."""
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    if data.get("preprocess") == "none" or not isinstance(data.get("crop_size"), int):
        return None
    return data["crop_size"]


# Exported files: what the translator needs besides the graph (channels, stride, direction,
# norm) travels inside: TorchScript ``_extra_files["cyclegan.json"]``, ONNX ``metadata_props``.


def is_exported(path: Path) -> bool:
    """An ONNX file, or a TorchScript archive (a zip with compiled ``code/``; ``torch.save`` checkpoints have none)."""
    if path.suffix.lower() == ".onnx":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


class _OnnxNet:
    """An onnxruntime session as a tensor -> tensor function."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort  # optional, and slow to import

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (y,) = self.session.run(None, {"input": x.detach().float().cpu().numpy()})
        return torch.from_numpy(y)


def _open_exported(path: Path, device: str | torch.device) -> tuple[Callable, str | None, str | torch.device]:
    """(net, metadata JSON or None, the device it takes inputs on)."""
    if path.suffix.lower() == ".onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise CheckpointError("running .onnx files needs onnxruntime: pip install 'cyclegan[onnx]'") from None
        net = _OnnxNet(path, torch.device(device))
        # onnxruntime takes and returns host memory
        return net, net.session.get_modelmeta().custom_metadata_map.get(EXPORT_META_KEY), "cpu"
    extra = {EXPORT_META_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return net, extra[EXPORT_META_KEY] or None, device


def load_exported(
    path: str | os.PathLike, *, direction: str | None = None, device: str | torch.device = "cpu",
    precision: str | None = "32",
) -> Translator:
    """A :class:`Translator` running an exported .pt (TorchScript) or .onnx file."""
    path = Path(path)
    if precision not in (None, "32"):
        raise CheckpointError(f"{path}: exported models run in float32; --precision {precision} needs the checkpoint")
    try:
        net, metadata, device = _open_exported(path, device)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - each runtime has its own error types
        reason = first_line(e)
        raise CheckpointError(f"cannot read exported model {path}: {reason}") from None
    if metadata is None:
        raise CheckpointError(f"{path} was not exported by `cyclegan export` (no {EXPORT_META_KEY} metadata)")
    meta = json.loads(metadata)
    if direction is not None and direction != meta["direction"]:
        raise CheckpointError(f"{path} holds the '{meta['direction']}' generator, not '{direction}'")
    return Translator(
        net, input_nc=meta["input_nc"], output_nc=meta["output_nc"], stride=meta["stride"], device=device,
        instance_norm=meta["norm"] == "instance", metadata=meta, path=path,
    )


# ---------------------------------------------------------------------------------------
# Python API


def as_translator(generator: nn.Module | Translator, device, precision) -> Translator:
    """``precision=None``: 32 for a module, its own for a Translator (which keeps its device and precision)."""
    if isinstance(generator, Translator):
        if (device is not None and torch.device(device) != generator.device) or (
            precision is not None and precision != generator.precision
        ):
            raise TranslateError("a loaded Translator keeps its device and precision; load it again to change them")
        return generator
    return Translator.from_module(generator, device=device, precision=precision or "32")


def translate_tensor(
    generator: nn.Module | Translator, x: torch.Tensor, *, tile: int | None = None, device: str | None = None,
    precision: Precision | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, stats_size: int = DEFAULT_STATS_SIZE,
) -> torch.Tensor:
    """Translate (C, H, W) or (N, C, H, W) in [-1, 1] of any size; returns the same layout on ``x``'s device."""
    translator = as_translator(generator, device, precision)
    batched = x.dim() == 4
    y = translator.translate(x if batched else x[None], tile=tile, max_pixels=max_pixels, stats_size=stats_size)
    return (y if batched else y[0]).to(x.device)


def translate_image(
    generator: nn.Module | Translator, image: Image.Image, *, resize: int | None = None, tile: int | None = None,
    device: str | None = None, precision: Precision | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
    stats_size: int = DEFAULT_STATS_SIZE,
) -> Image.Image:
    """Translate a PIL image at full resolution (or short side ``resize``); see the module docstring for the rules."""
    translator = as_translator(generator, device, precision)
    array, alpha = prepare_image(image, channels=translator.input_nc, resize=resize)
    y = translator.translate(to_tensor([array], translator.device), tile=tile, max_pixels=max_pixels, stats_size=stats_size)
    return finish_image(to_numpy_images(y)[0], alpha)


