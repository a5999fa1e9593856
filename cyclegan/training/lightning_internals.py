"""The only lines of this package that touch Lightning's private internals: three, each with
no public route in Lightning 2.6 (pyproject.toml names the tested range).

Everything else uses public APIs: ``Strategy.optimizer_step`` for the uncounted discriminator
update, the models' own batch count for the logging cadence, the DataModule's
``on_after_batch_transfer`` for the data's resume position, LightningCLI's
``before_instantiate_classes`` for ``--ckpt_path last``. tests/test_lightning_internals.py
runs each function below against the installed Lightning, so an upgrade that moves one of
these names fails there, loudly, rather than in a user's run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def batches_trained(checkpoint: Mapping[str, Any]) -> int | None:
    """The training batches a checkpoint written before the models counted theirs had run: what
    Lightning's logging cadence continues from when it resumes (its ``_batches_that_stepped``
    plus the one it adds back for a checkpoint written at a batch's end). Lightning has no public
    reader of its loop state; ``global_step`` is no substitute (it skips iterations whose update
    was skipped)."""
    return checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["processed"]  # private layout


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning's WandbLogger always passes ``anonymous=None`` to ``wandb.init``, which warns
    that the setting is deprecated whatever its value; its ``wandb.init`` arguments have no setter."""
    logger._wandb_init.pop("anonymous", None)  # private: WandbLogger's wandb.init keyword arguments


def set_wandb_mode(logger: Any, mode: str) -> None:
    """Make the next ``logger.experiment`` start the run ``offline`` or ``disabled``: Lightning's
    WandbLogger fixes its mode at construction (a failed ``wandb.init`` leaves the run unstarted,
    so the next access tries again with this mode)."""
    logger._wandb_init["mode"] = mode  # private: WandbLogger's wandb.init keyword arguments
