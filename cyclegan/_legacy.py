"""Module paths of cyclegan 0.1's flat layout that files on users' disks still name.

A run's saved ``config.yaml`` holds class paths such as ``cyclegan.tracking.WandbLogger``
(written by LightningCLI from the class's module), and ``cyclegan fit --config`` must keep
reading it. Each old path imports as a small module that hands out the names now living in
the modules listed for it; nothing else of the old layout is kept.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

OLD_MODULES = {
    "cyclegan.tracking": ("cyclegan.training.wandb_logger",),
    "cyclegan.cycle_gan": ("cyclegan.training.cycle_gan",),
    "cyclegan.method1": ("cyclegan.training.method1",),
    "cyclegan.callbacks": ("cyclegan.training.callbacks", "cyclegan.evaluation.validation"),
}


def _alias(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"cyclegan 0.1's {name}: now {', '.join(OLD_MODULES[name])}")

    def __getattr__(attr: str):
        for new in OLD_MODULES[name]:
            value = getattr(importlib.import_module(new), attr, None)
            if value is not None:
                return value
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    module.__getattr__ = __getattr__
    return module


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in OLD_MODULES else None

    def create_module(self, spec):
        return _alias(spec.name)

    def exec_module(self, module) -> None:
        pass  # its names come from the new modules, on first access


def install() -> None:
    if not any(isinstance(finder, _OldPath) for finder in sys.meta_path):
        sys.meta_path.append(_OldPath())
