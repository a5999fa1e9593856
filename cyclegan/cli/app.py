"""The ``cyclegan`` command: ``fit``/``validate`` (LightningCLI, in :mod:`cyclegan.cli.fit`) and the
tool commands of :mod:`cyclegan.cli.commands` (translate, export, evaluate, compare, ...).

Lightning is imported only for fit and validate: ``cyclegan --help`` and the tools start
without it.

    cyclegan fit --config configs/cyclegan.yaml --data.root datasets/horse2zebra
    cyclegan translate --checkpoint last.ckpt --input photos/ --output zebras/
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

from cyclegan.cli.commands import COMMANDS
from cyclegan.errors import CycleGANError

# Commands beside fit/validate: name -> function taking the remaining arguments and
# returning an exit code (see cyclegan.cli.commands).
TOOLS = COMMANDS
TRAINING = {
    "fit": "train CycleGAN or method 1 (LightningCLI: --config, --data.root, --trainer.*, --ckpt_path last)",
    "validate": "run validation of a checkpoint (--ckpt_path) with a training config",
}
_SUMMARIES = {
    "translate": "translate a folder of images (or one image) with a checkpoint or an exported model",
    "export": "export a generator to TorchScript, ONNX, the authors' .pth layout or a Hugging Face model folder",
    "push": "export a generator as a Hugging Face model folder and upload it to the Hub (hf:ORG/NAME)",
    "evaluate": "score one model's translations (KID/FID, paired and structure metrics)",
    "compare": "translate the same inputs with several models and write a report",
    "pretrained": "list or download the authors' published generators (pretrained:NAME)",
}


def commands() -> list[str]:
    return [*TRAINING, *TOOLS]


def _summary(name: str) -> str:
    if name in TRAINING:
        return TRAINING[name]
    doc = (TOOLS[name].__doc__ or "").strip().splitlines()
    return _SUMMARIES.get(name) or (doc[0] if doc else "")


def usage() -> str:
    width = max(map(len, commands()))
    lines = ["usage: cyclegan [--debug] [--verbose] COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {_summary(name)}" for name in commands()]
    lines += ["", "`cyclegan COMMAND --help` lists a command's options; --debug shows tracebacks instead of "
              "one-line errors; --verbose (fit, validate) shows everything Lightning and W&B print."]
    return "\n".join(lines)


class UnknownCommand(CycleGANError):
    """A command name that is not one of :func:`commands` (exit code 2)."""


def _unknown(name: str) -> UnknownCommand:
    close = difflib.get_close_matches(name, commands(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return UnknownCommand(f"unknown command '{name}' (choose from {', '.join(commands())}){hint}")


def build_cli(args: list[str] | None = None, *, run: bool = True, verbose: bool = False) -> Any:
    """LightningCLI for fit/validate (see :func:`cyclegan.cli.fit.build_cli`); after ``fit`` it holds
    ``.model`` and ``.trainer``."""
    from cyclegan.cli import fit  # Lightning: only for the training commands

    return fit.build_cli(args, run=run, verbose=verbose)


def run(argv: list[str], *, debug: bool = False, verbose: bool = False) -> int | None:
    """Run one command line (without the program name): the exit code, or None after a training
    command that finished. A :class:`CycleGANError` becomes one ``error: ...`` line and its exit
    code; with ``debug`` it propagates with its traceback."""
    try:
        if argv and argv[0] in TOOLS:
            return TOOLS[argv[0]](argv[1:])
        if argv and not argv[0].startswith("-") and argv[0] not in TRAINING:
            raise _unknown(argv[0])
        build_cli(argv, verbose=verbose)
        return None
    except CycleGANError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cyclegan`` console script."""
    try:
        code = _main(sys.argv[1:] if argv is None else list(argv))
        sys.stdout.flush()
    except BrokenPipeError:  # `cyclegan ... | head`: the reader left; no traceback (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    if code is not None:
        raise SystemExit(code)


def _main(argv: list[str]) -> int | None:
    debug = "--debug" in argv  # tracebacks instead of one-line errors, for every command
    argv = [a for a in argv if a != "--debug"]
    verbose = bool(argv) and argv[0] in TRAINING and "--verbose" in argv
    argv = [a for a in argv if not (verbose and a == "--verbose")]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    return run(argv, debug=debug, verbose=verbose)


if __name__ == "__main__":
    main()
