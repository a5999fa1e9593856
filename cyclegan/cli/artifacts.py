"""``cyclegan fit --model_artifact.enabled true``: the final checkpoint's generators as W&B model artifacts.

A callback of the CLI's (like :class:`~cyclegan.cli.summary.RunSummary`) rather than of
:mod:`cyclegan.training`: it exports through :mod:`cyclegan.inference`, which the training layer
may not import. Each artifact is the model folder ``cyclegan export --format hf`` writes, so
``--checkpoint wandb:ENTITY/PROJECT/NAME:ALIAS`` loads it wherever a checkpoint is accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from cyclegan.cli.summary import say
from cyclegan.errors import CycleGANError, warn
from cyclegan.inference.export import CardOptions, export_checkpoint
from cyclegan.inference.hub import CONFIG_NAME
from cyclegan.training.callbacks import LastCheckpoint, run_dir
from cyclegan.training.wandb_logger import WandbLogger
from cyclegan.training.wandb_runs import run_folder


def artifact_name(kind: str, direction: str, run_id: str) -> str:
    """``cyclegan-a2b-1a2b3c4d``: one artifact per generator of a run."""
    return f"{kind}-{direction}-{run_id}"


class ModelArtifact(pl.Callback):
    """At the end of training, exports each generator of the final checkpoint (``last.ckpt``, written
    first if it is behind) as a Hugging Face model folder under ``<run>/model/step-N/<direction>/``
    and logs it as a W&B model artifact of the run: ``<kind>-<direction>-<run id>``, aliases
    ``latest`` and ``step-N``. An offline run keeps the artifact and uploads it with ``wandb sync``
    (the files stay in the run folder). Without a W&B run the folders are still written.

    Args:
        enabled: log the artifacts (off by default: each is a copy of the generator's weights).
        license: the model cards' licence, a Hub licence id (default: the toolkit's).
    """

    def __init__(self, enabled: bool = False, license: str | None = None) -> None:
        self.enabled, self.license = enabled, license
        self.logged: dict[str, str] = {}  # direction -> artifact name (or the folder, without W&B)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        lasts = [c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)]
        for callback in lasts:  # on every rank, as saving needs; a no-op when last.ckpt holds this step
            callback.save_now(trainer)
        path = next((c.last_model_path for c in lasts if c.last_model_path), None)
        if not trainer.is_global_zero or not path or not Path(path).is_file():
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger) and not lg.disabled), None)
        run = logger.experiment if logger is not None else None
        try:
            folders = self._export(trainer, pl_module, Path(path), run)
            if run is None:
                self.logged = {d: str(f) for d, f in folders.items()}
                say(f"model folders (no W&B run to log them to): {', '.join(map(str, folders.values()))}")
            else:
                self._log(trainer, pl_module, folders, run, offline=logger.offline)
        except CycleGANError as e:  # training went well; the checkpoint is there to export by hand
            warn(f"warning: no model artifact ({e}); export by hand with cyclegan export --format hf")

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule, path: Path, run: Any) -> dict[str, Path]:
        root = (path.parent.parent if path.parent.name == "checkpoints" else run_dir(trainer)) / "model"
        folders = {}
        for direction in pl_module.directions:
            output = root / f"step-{trainer.global_step:07d}" / direction
            card = CardOptions(license=self.license)
            if run is not None:  # the card names the artifact
                name = artifact_name(pl_module.kind, direction, run.id)
                card = CardOptions(license=self.license, name=name,
                                   ref=f"wandb:{getattr(run, 'entity', None) or 'ENTITY'}/{run.project}/{name}:latest")
            result = export_checkpoint(path, output, fmt="hf", direction=direction, card=card)
            if not result.written:
                raise CycleGANError(f"the {direction} folder differs from the checkpoint by {result.difference:.1e}")
            folders[direction] = output
        return folders

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folders: dict[str, Path], run: Any, *,
             offline: bool) -> None:
        import wandb  # with the W&B logger, already loaded

        step = trainer.global_step
        for direction, folder in folders.items():
            name = artifact_name(pl_module.kind, direction, run.id)
            config: dict[str, Any] = json.loads((folder / CONFIG_NAME).read_text())
            artifact = wandb.Artifact(name, type="model", metadata={**config, "step": step},
                                      description=f"{pl_module.kind} generator {direction} at step {step}")
            artifact.add_dir(str(folder), policy="immutable")  # referenced in place: the run folder keeps it
            run.log_artifact(artifact, aliases=["latest", f"step-{step}"])
            self.logged[direction] = name
        first = next(iter(self.logged.values()))
        if offline:
            say(f"W&B: model artifacts {', '.join(self.logged.values())} (uploaded by `wandb sync {run_folder(run)}`; "
                f"then --checkpoint wandb:ENTITY/{run.project}/{first}:latest)")
        else:
            say(f"W&B: model artifacts {', '.join(self.logged.values())}; use one with --checkpoint "
                f"wandb:{run.entity}/{run.project}/{first}:latest")
