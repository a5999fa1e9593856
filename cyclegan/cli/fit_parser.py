"""The argument parser of ``cyclegan fit`` / ``cyclegan validate``: LightningCLI's (jsonargparse)
with a bad argument reported as one line (:mod:`cyclegan.cli.parsing`).

jsonargparse's messages for a bad config or nested value run to many lines and name its own
internals (``NestedArg``, ``Parser key``); :meth:`FitArgumentParser.error` turns them into the
option a user typed and what it expects.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import NoReturn

from pytorch_lightning.cli import LightningArgumentParser

from cyclegan.cli.parsing import ArgumentError, did_you_mean, import_class


class FitArgumentParser(LightningArgumentParser):
    """Raises :class:`ArgumentError` (one ``error:`` line, which cli.app prints) instead of a usage
    dump, suggesting the closest option or model setting for a misspelt one."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse parsing a nested value: it catches this itself
            super().error(message, ex)
        message = str(message)
        text = _nested_value(message) or _first_line(message)
        text = _unknown_setting(message) or text
        raise ArgumentError(text + did_you_mean(text, self)) from ex


def _lines(message: str) -> list[str]:
    return [line.strip() for line in message.strip().splitlines() if line.strip()]


def _first_line(message: str) -> str:
    """The message's first line; for "does not validate against any of the types:", with the last reason."""
    lines = _lines(message)
    text = lines[0] if lines else "bad arguments"
    if len(lines) > 1 and text.endswith(":"):
        text = f"{text} {lines[-1]}"
    return text


def _nested_value(message: str) -> str | None:
    """A bad value inside ``--model.init_args``: the option and what it expects, not jsonargparse's NestedArg."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    expected = next((line.lstrip("- ") for line in _lines(message)
                     if line.lstrip("- ").startswith("Expected") and "NoneType" not in line), None)
    if len(keys) < 2 or not expected:
        return None
    return f"--{'.'.join(keys[:1] + ['init_args'] * ('class_path' in message) + keys[1:])}: {expected}"


def _unknown_setting(message: str) -> str | None:
    """``--model.init_args.X`` the model class has no setting X for: say so, with the closest one."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    refused = re.search(r"Option '([^']+)' is not accepted", message)
    owner = re.search(r"given class_path '([^']+)'", message)
    if not (keys and refused and owner):
        return None
    model_class = import_class(owner.group(1))
    close = difflib.get_close_matches(refused.group(1), model_settings(model_class), n=1, cutoff=0.6)
    return (f"--{keys[0]}.init_args.{refused.group(1)}: {model_class.__name__} has no such setting"
            + (f" (did you mean --{keys[0]}.init_args.{close[0]}?)" if close else ""))


def model_settings(model_class: type) -> list[str]:
    """Every keyword a model takes: its own, then, while an ``__init__`` passes ``**kwargs`` on,
    its base classes' (what LightningCLI offers as ``--model.init_args.*``)."""
    names: list[str] = []
    for cls in model_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names

