"""The non-finite guard: an update whose losses are not finite is skipped, and a run that gives
only such losses stops with the loss's name.

One bad batch (a NaN from an unlucky crop, a bf16 overflow) should cost an iteration, not the
run; many in a row mean training has diverged and should stop, naming the loss.

Two ways to decide, the same promise:

* **at once** (CPU, and any optimizer without a ``found_inf`` input): each decision reads one
  bool. On a CPU that read costs nothing; the update is not run at all.
* **on the device** (CUDA with fused Adam, the default there): reading a GPU value makes the host
  wait for the GPU to finish, every step. Instead the flag stays on the GPU and goes to fused
  Adam as its ``found_inf`` input (the input ``torch.amp.GradScaler`` uses to skip an overflowed
  step): the kernel leaves weights, moments and step count alone when it is set. The counts are
  read only on logging iterations (and at the end), where Lightning reads the logged values anyway;
  a run that diverged stops there, with its weights those of the last finite update. Every later
  update of an iteration with a skipped update is skipped too; the image pools store finite copies
  of its fakes (see :class:`~cyclegan.models.image_pool.ImagePool`).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from cyclegan.errors import NonFiniteLossError, warn


class NonFiniteGuard:
    """Skips updates whose losses are not finite; stops after ``patience`` iterations in a row.

    Per iteration: :meth:`begin`, then for each update ``if guard.finite(module, losses, opt):``
    run it, :meth:`step_done` after the last one, and :meth:`end` (which checks, when due).
    """

    def __init__(self, patience: int = 5) -> None:
        self.patience = patience
        self.deferred: bool | None = None  # None: chosen when the fit starts (see choose)
        self._in_a_row, self._skipped = 0, 0  # host counts (deferred: as of the last check)
        self._dev: dict[str, torch.Tensor] = {}  # deferred: device counts and this iteration's flag
        self._last_bad: dict[tuple[str, ...], torch.Tensor] = {}  # deferred: losses of the last bad call
        self._since = 0  # deferred: global_step at the last check

    # ---------------------------------------------------------------------------- setup
    def choose(self, trainer: pl.Trainer, optimizers: list[torch.optim.Optimizer]) -> None:
        """Decide on the device where it pays and works: CUDA, every optimizer fused (they take
        ``found_inf``), and no GradScaler (16-mixed sets ``found_inf`` itself)."""
        if self.deferred is None:
            self.deferred = (trainer.strategy.root_device.type == "cuda" and "16" not in str(trainer.precision)
                             and all(group.get("fused") for opt in optimizers for group in opt.param_groups))

    @property
    def skipped(self) -> int:
        """Updates skipped so far (deferred: as of the last check)."""
        return self._skipped

    @property
    def in_a_row(self) -> int:
        return self._in_a_row

    def skipped_so_far(self) -> float | torch.Tensor:
        """Updates skipped so far, this iteration included, for logging (deferred: on the device)."""
        return self._dev["skipped"].float() if self.deferred and self._dev else float(self._skipped)

    # ---------------------------------------------------------------------------- per iteration
    def begin(self, device: torch.device) -> None:
        if self.deferred:
            if not self._dev:
                self._dev = {k: torch.zeros((), dtype=torch.int64, device=device) for k in ("skipped", "in_a_row")}
            self._dev["bad"] = torch.zeros((), dtype=torch.bool, device=device)

    def finite(self, module: pl.LightningModule, losses: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Whether to run this update. At once: True if every loss is finite, else count the
        skip (raising after ``patience``) and return False. Deferred (with ``optimizer``): always
        True; the update is skipped on the device by ``optimizer``'s ``found_inf``."""
        values = torch.stack([v.detach().float() for v in losses.values()])
        if not (self.deferred and optimizer is not None):
            return self._finite_now(module, losses, values)
        bad_here = ~values.isfinite().all()
        if module.trainer.world_size > 1:  # every rank skips together: the all-reduced gradients are NaN on all
            bad_here = module.trainer.strategy.reduce(bad_here.float(), reduce_op="sum") > 0
        bad = self._dev["bad"]
        new = bad_here & ~bad  # an iteration counts once, however many of its updates are skipped
        self._dev["skipped"] += new
        self._dev["in_a_row"] += new
        self._dev["bad"] = bad = bad | bad_here
        key = tuple(losses)
        self._last_bad[key] = torch.where(bad_here, values, self._last_bad.get(key, torch.zeros_like(values)))
        getattr(optimizer, "optimizer", optimizer).found_inf = bad.float()  # shape (), as the steps it is subtracted from
        return True

    def step_done(self) -> None:
        """After the iteration's last update: it was applied (at once), or maybe applied (deferred)."""
        if self.deferred:
            self._dev["in_a_row"] *= self._dev["bad"]  # a finite iteration ends the streak
        else:
            self._in_a_row = 0

    def end(self, module: pl.LightningModule, *, due: bool) -> None:
        """Deferred: read the counts when ``due`` (logging iterations and the last), warn about
        skipped updates since the last check, and stop after ``patience`` in a row."""
        if not (self.deferred and due and self._dev):
            return
        skipped, in_a_row = (int(v) for v in torch.stack([self._dev["skipped"], self._dev["in_a_row"]]).tolist())
        new, self._skipped, self._in_a_row = skipped - self._skipped, skipped, in_a_row
        step, since, self._since = module.global_step, self._since, module.global_step
        if not new:
            return
        what = self._what_was_bad()
        if in_a_row >= self.patience:
            raise NonFiniteLossError(f"training stopped: {what} for {in_a_row} iterations in a row "
                                     f"(by step {step}); last good checkpoint: {_last_checkpoint(module)}")
        warn(f"warning: {what} in {new} of the iterations after step {since} (up to step {step}); "
             "skipped those updates")

    # ---------------------------------------------------------------------------- helpers
    def _finite_now(self, module: pl.LightningModule, losses: Mapping[str, torch.Tensor], values: torch.Tensor) -> bool:
        ok = bool(values.isfinite().all())  # one device read
        if module.trainer.world_size > 1:  # every rank must skip (or not) together, or DDP's all-reduce hangs
            ok = module.trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return True
        self._skipped += 1
        self._in_a_row += 1
        bad = next((k for k, v in losses.items() if not torch.isfinite(v)), None)
        what = f"{bad} was {losses[bad].item()}" if bad else "a loss on another DDP rank was not finite"
        if self._in_a_row >= self.patience:
            raise NonFiniteLossError(
                f"training stopped: {what} for {self._in_a_row} iterations in a row "
                f"(at step {module.global_step}); last good checkpoint: {_last_checkpoint(module)}"
            )
        warn(f"warning: {what} at step {module.global_step}; skipping this update")
        return False

    def _what_was_bad(self) -> str:
        """'<loss> was <value>' for the latest non-finite losses (read on a check only)."""
        for keys, values in self._last_bad.items():
            for name, value in zip(keys, values.tolist()):
                if value != value or value in (float("inf"), float("-inf")):
                    return f"{name} was {value}"
        return "a loss on another DDP rank was not finite"


def _last_checkpoint(module: pl.LightningModule) -> str:
    last = [c.last_model_path for c in module.trainer.checkpoint_callbacks if c.last_model_path]
    return last[0] if last else "none written yet"
