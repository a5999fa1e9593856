"""A callback for the DDP tests: each rank saves its training state when fit ends."""

from pathlib import Path

import pytorch_lightning as pl
import torch


class DumpWeights(pl.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items() if k.startswith(("G_", "nce_heads."))}
        pools = {k: torch.stack(p.images) for k, p in pl_module.pools.by_name.items() if p.images}
        full = {  # everything a resumed run must get back exactly
            "weights": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
            "optimizers": [opt.optimizer.state_dict() for opt in pl_module.optimizers()],
            "pools": pl_module.pools.state_dict(), "step": trainer.global_step,
        }
        torch.save({"weights": state, "pools": pools, "full": full}, self.folder / f"rank{trainer.global_rank}.pt")
