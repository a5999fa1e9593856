"""bench/vs_authors.py: the per-iteration cost from whole runs cancels start-up, and bad paths get one line."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_vs_authors", REPO / "bench" / "vs_authors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sleeper(startup: float, per_iteration: float):
    """A stand-in for a training command: start-up, then the iterations."""
    def command(args, iterations, out):
        return [sys.executable, "-c", f"import time; time.sleep({startup} + {iterations} * {per_iteration})"]
    return command


def test_the_ratio_is_per_iteration_with_start_up_cancelled(bench, tmp_path, monkeypatch, capsys):
    authors, data = tmp_path / "authors", tmp_path / "data"
    (authors / "models").mkdir(parents=True)
    (authors / "train.py").write_text("")
    (authors / "models" / "cycle_gan_model.py").write_text("")
    (data / "trainA").mkdir(parents=True)
    (data / "trainB").mkdir()
    monkeypatch.setattr(bench, "theirs", _sleeper(0.1, 0.4))  # 4x ours per iteration, a shorter start-up
    monkeypatch.setattr(bench, "ours", _sleeper(0.8, 0.1))
    monkeypatch.setattr(sys, "argv", ["vs_authors.py", "--authors", str(authors), "--data", str(data),
                                      "--short", "1", "--long", "4", "--rounds", "1"])
    bench.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["speedup_mean"] == pytest.approx(4.0, rel=0.25)  # whole runs would say 1.7 / 1.2 = 1.4x
    assert result["ours_s_per_iteration"][0] == pytest.approx(0.1, abs=0.04)


def test_a_folder_that_is_not_their_code_gets_one_line(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vs_authors.py", "--authors", str(tmp_path), "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"not a checkout of the CycleGAN authors' code"):
        bench.main()
