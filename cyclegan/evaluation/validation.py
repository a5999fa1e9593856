"""KID (and the paired metrics) of the translations during training: a Lightning callback of the
evaluation layer, so that training itself never needs the Inception network or the metrics."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from cyclegan.data.datamodule import stack_cropped
from cyclegan.data.images import to_uint8
from cyclegan.errors import MetricsError
from cyclegan.evaluation.features import extract_features, load_feature_extractor
from cyclegan.evaluation.metrics import kid, paired_metrics


class ValidationMetrics(pl.Callback):
    """KID of the A -> B translations of the validation images against the real B ones, and the
    paired metrics when the validation folders are aligned (the same file names in both).

    Runs after every ``every_n_epochs``-th validation on at most ``max_images`` images at the
    crop size and logs ``val/kid_ab`` (and ``val/kid_ab_std``, ``val/rmse_ab``,
    ``val/pixel_acc_ab``, ``val/ssim_ab``, ``val/edge_f1_ab``). Pick the best checkpoint with
    ``--checkpoint.monitor val/kid_ab --checkpoint.mode min --checkpoint.save_top_k 1``.

    Args:
        every_n_epochs: validations between measurements (0: never).
        features: ``inception`` (the FID network; downloaded on first use, or ``inception``
            names a local TorchScript copy) or ``random-conv`` (no download; comparable
            only between runs that use it). When Inception cannot be had, it warns once
            and uses ``random-conv``.
        inception: path of a local TorchScript FID Inception network.
        max_images: cap on validation images per domain.
    """

    def __init__(self, every_n_epochs: int = 5, features: Literal["inception", "random-conv"] = "inception",
                 inception: str | None = None, max_images: int = 200) -> None:
        self.every_n_epochs, self.features, self.inception = every_n_epochs, features, inception
        self.max_images = max_images
        self._extractor = None
        self._real_features: torch.Tensor | None = None
        self._too_few_images = False  # set once the validation set proves too small: warned, never measured again

    def _feature_extractor(self):
        if self._extractor is None:
            try:
                self._extractor = load_feature_extractor(self.features, inception_path=self.inception)
            except MetricsError as e:
                rank_zero_warn(f"{e}; validation KID uses random-conv features instead")
                self._extractor = load_feature_extractor("random-conv")
        return self._extractor

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dataset = getattr(trainer.datamodule, "val_set", None)
        if (trainer.sanity_checking or dataset is None or self.every_n_epochs <= 0 or self._too_few_images
                or (trainer.current_epoch + 1) % self.every_n_epochs):
            return
        n = min(self.max_images, len(dataset.files_a), len(dataset.files_b))
        if n < 2:
            rank_zero_warn(f"validation KID needs at least 2 images per domain, the validation set has {n}; skipped")
            self._too_few_images = True
            return
        items = [dataset[i] for i in range(n)]
        real_a = stack_cropped([it["A"] for it in items])
        real_b = to_uint8(stack_cropped([it["B"] for it in items]))
        with torch.no_grad():
            fake_b = to_uint8(torch.cat([pl_module(real_a[i:i + 16].to(pl_module.device)).cpu()
                                          for i in range(0, n, 16)]))
        extractor = self._feature_extractor()
        if self._real_features is None:  # the real images never change
            self._real_features = extract_features(real_b, extractor, device=pl_module.device)
        mean, std, _ = kid(self._real_features, extract_features(fake_b, extractor, device=pl_module.device),
                           subsets=50, subset_size=min(100, n))
        logs = {"val/kid_ab": mean, "val/kid_ab_std": std}
        if all(a.name == b.name for a, b in zip(dataset.files_a[:n], dataset.files_b[:n])):
            paired = paired_metrics(fake_b, real_b)
            logs.update({f"val/{k}_ab": v.mean().item() for k, v in paired.items()})
        pl_module.log_dict(logs, sync_dist=True)
