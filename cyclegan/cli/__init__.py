"""The ``cyclegan`` command (:mod:`.app`): ``fit``/``validate`` through LightningCLI (:mod:`.fit`)
and the tool commands (:mod:`.commands`). The only place that prints or parses arguments;
nothing in the package imports it."""

from cyclegan.cli.app import build_cli, main, run

__all__ = ["build_cli", "main", "run"]
