"""Training callbacks: sample grids of fixed validation images."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid, save_image

from .data import to_unit_range
from .tracking import WandbLogger


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's folder: the parent of its checkpoint folder, else the trainer's root."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath).parent
    return Path(trainer.default_root_dir)


class SampleGrid(pl.Callback):
    """Translates a fixed set of validation images and logs the grid.

    Each row is one image; the columns are the model's ``sample_columns`` (real |
    translated | reconstructed, both directions for CycleGAN). Logged to W&B under
    ``samples`` and written to ``<run dir>/samples/step_XXXXXXX.png`` every
    ``every_n_steps`` training steps (0: never) and after each validation.

    Args:
        num_images: rows in the grid (the first validation images of each domain).
        every_n_steps: training steps between grids.
    """

    def __init__(self, num_images: int = 4, every_n_steps: int = 500) -> None:
        self.num_images, self.every_n_steps = num_images, every_n_steps
        self._batch: dict[str, torch.Tensor] | None = None
        self.last_path: Path | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "sample_batch"):
            datamodule.setup("fit")
            self._batch = datamodule.sample_batch(self.num_images)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_grid(trainer, pl_module)

    def log_grid(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._batch is None or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        columns = pl_module.sample_columns(
            self._batch["A"].to(pl_module.device), self._batch["B"].to(pl_module.device)
        )
        pl_module.train(was_training)
        # (N, K, 3, H, W) -> rows of K images; grayscale columns shown as RGB.
        tiles = torch.stack([to_unit_range(c.float()).expand(-1, 3, -1, -1) for c in columns], dim=1)
        grid = make_grid(tiles.flatten(0, 1).cpu(), nrow=len(columns), padding=2, pad_value=1.0)
        path = run_dir(trainer) / "samples" / f"step_{trainer.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        self.last_path = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples", [grid], step=trainer.global_step, caption=[f"step {trainer.global_step}"])
