"""What both argument parsers of the ``cyclegan`` command share: a bad argument is one ``error:``
line, with the closest option suggested for a misspelt one, not a usage dump.

Two parsers use it: :class:`ToolArgumentParser` (plain argparse, the tool commands of
:mod:`cyclegan.cli.commands`) and :class:`cyclegan.cli.fit_parser.FitArgumentParser`
(jsonargparse, for LightningCLI). This module imports neither Lightning nor jsonargparse, so
that ``cyclegan --help`` and the tools start without them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
from typing import Any, NoReturn

from cyclegan.errors import CycleGANError


class ArgumentError(CycleGANError):
    """A bad ``fit``/``validate`` argument or config file (exit code 2)."""


def option_strings(parser: Any) -> list[str]:
    """Every ``--option`` of an argparse (or jsonargparse) parser and its subcommands' parsers."""
    options = []
    for action in parser._actions:
        options += [s for s in action.option_strings if s.startswith("--")]
        for sub in (getattr(action, "_name_parser_map", None) or {}).values():  # subcommands
            options += option_strings(sub)
    return options


def did_you_mean(message: str, parser: Any) -> str:
    """`` (did you mean --x?)`` for an ``unrecognized arguments: --y ...`` message whose first
    argument is close to one of ``parser``'s options, else ``""``."""
    unknown = re.search(r"unrecognized arguments: (\S+)", message)
    if not unknown:
        return ""
    close = difflib.get_close_matches(unknown.group(1).split("=")[0], option_strings(parser), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def import_class(class_path: str) -> type:
    """The class a ``class_path`` (``package.module.Name``) names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class ToolArgumentParser(argparse.ArgumentParser):
    """argparse for the tool commands: a bad argument is one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}{did_you_mean(message, self)} (see {self.prog} --help)\n")
