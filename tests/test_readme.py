"""The README's commands: every ``cyclegan ...`` line parses (fast), and every command block meant to
run offline runs as written (slow: it needs the demo's checkpoints, which it trains briefly).

A ```bash block right after an HTML comment ``<!-- not run by tests/test_readme.py: WHY -->`` is
left out of the run (a download, hours of training, ``make`` itself); its ``cyclegan`` lines are
still parsed."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cyclegan.cli import app as cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SKIP = "<!-- not run by tests/test_readme.py"


def blocks(text: str | None = None) -> list[tuple[str, str, bool]]:
    """(language, body, runs) for each fenced block; ``runs``: not marked as left out."""
    text = README.read_text() if text is None else text
    found = []
    for match in re.finditer(r"```(\w*)\n(.*?)```", text, flags=re.S):
        before = text[: match.start()].rstrip().splitlines()
        runs = not (before and before[-1].startswith(SKIP))
        found.append((match.group(1), match.group(2), runs))
    return found


def commands(body: str) -> list[list[str]]:
    """The block's command lines (continuations joined, comments dropped), each split as a shell would."""
    joined = body.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def cyclegan_lines() -> list[list[str]]:
    return [argv[1:] for lang, body, _ in blocks() if lang == "bash" for argv in commands(body) if argv[0] == "cyclegan"]


class _Parsed(Exception):
    """Raised in place of running a command once its arguments parsed."""


def test_readme_is_a_guide_of_at_most_300_lines_naming_the_models_and_how_to_run_the_tools():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    for config in ("configs/cyclegan.yaml", "configs/method1.yaml", "configs/cut.yaml", "configs/fastcut.yaml"):
        assert config in text and (REPO / config).is_file(), config
    assert "source .venv/bin/activate" in text and ".venv/bin/cyclegan" in text
    assert "pip install -e ." not in text.replace('pip install -e ".[dev]"', "")  # only into .venv, as make does
    for link in re.findall(r"\]\(((?:docs|datasets)/[^)#]+)\)", text):
        assert (REPO / link).exists(), link
    for note in ("../shared", "issue ", "ONE core", "other core"):
        assert note not in text, note


def test_every_readme_cyclegan_command_parses(monkeypatch):
    lines = cyclegan_lines()
    assert {argv[0] for argv in lines} >= {"fit", "translate", "evaluate", "compare", "export", "pretrained"}
    monkeypatch.chdir(REPO)

    from cyclegan.cli.fit_parser import FitArgumentParser

    def stop_after(parser_class):
        original = parser_class.parse_args

        def parsed(self, *args, **kwargs):
            raise _Parsed(original(self, *args, **kwargs))
        return parsed

    for argv in lines:
        if argv[0] == "fit":  # LightningCLI: parsing also checks the configs and class paths
            with monkeypatch.context() as m:
                m.setattr(FitArgumentParser, "parse_args", stop_after(FitArgumentParser))
                with pytest.raises(_Parsed):
                    cli.build_cli(argv)  # stops once parsed: nothing is built or run
            continue
        with monkeypatch.context() as m:
            m.setattr(argparse.ArgumentParser, "parse_args", stop_after(argparse.ArgumentParser))
            with pytest.raises(_Parsed):
                cli.TOOLS[argv[0]](argv[1:])


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    """Each block meant to run offline, in order, in a copy of the repository's configs and data, with
    the demo's two checkpoints trained for a few iterations (the README's commands expect them) and
    ``cyclegan`` on PATH as ``source .venv/bin/activate`` puts it; training commands get 4 iterations."""
    work = tmp_path / "repo"
    for name in ("configs", "datasets"):
        shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("*.pyc"))
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "WANDB_MODE": "offline", "HOME": str(tmp_path / "home"),
           "CYCLEGAN_CACHE": str(tmp_path / "cache")}
    short = ["--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false", "--val_metrics.every_n_epochs", "0"]
    demo = work / "runs" / "demo"
    for kind in ("cyclegan", "method1"):  # what make demo leaves, trained for 4 iterations
        fit = ["cyclegan", "fit", "--config", f"configs/{kind}.yaml", "--config", "configs/fast.yaml",
               "--data.root", "datasets/emoji2lineart", "--trainer.default_root_dir", str(demo),
               "--last_checkpoint.dirpath", str(demo / "checkpoints" / kind), *short]
        subprocess.run(fit, cwd=work, env=env, check=True, capture_output=True, timeout=600)
    ran = 0
    for lang, body, runs in blocks():
        if not runs or lang not in ("bash", "python"):
            continue
        if lang == "python":
            result = subprocess.run([sys.executable, "-c", body], cwd=work, env=env, capture_output=True, text=True,
                                    timeout=600)
            assert result.returncode == 0, (body, result.stderr[-3000:])
            ran += 1
            continue
        for argv in commands(body):
            if argv[:2] == ["cyclegan", "fit"]:
                argv = [*argv, *short]
            result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, (argv, result.stderr[-3000:])
            ran += 1
    assert ran >= 8
