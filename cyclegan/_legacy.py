"""Module paths of cyclegan 0.1's flat layout that files on users' disks still name.

A run's saved ``config.yaml`` holds class paths such as ``cyclegan.tracking.WandbLogger``
(written by LightningCLI from the class's module), and ``cyclegan fit --config`` must keep
reading it. Each old path imports as the module that now holds those classes; nothing else
of the old layout is kept.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

OLD_MODULES = {
    "cyclegan.tracking": "cyclegan.training.wandb_logger",
    "cyclegan.cycle_gan": "cyclegan.training.cycle_gan",
    "cyclegan.method1": "cyclegan.training.method1",
    "cyclegan.callbacks": "cyclegan.training.callbacks",
}


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in OLD_MODULES else None

    def create_module(self, spec):
        return importlib.import_module(OLD_MODULES[spec.name])  # the module itself, under its old name too

    def exec_module(self, module) -> None:
        pass  # already executed under its new name


def install() -> None:
    if not any(isinstance(finder, _OldPath) for finder in sys.meta_path):
        sys.meta_path.append(_OldPath())
