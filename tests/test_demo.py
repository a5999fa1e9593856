"""``make demo``: the bundled pair it trains on, what its recipe trains (on a few images, for two
steps) and translates with, and its last step (strip + JSON line)."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cyclegan
from cyclegan.cli import app as cli
from cyclegan.training.state import translator_meta
REPO = Path(__file__).resolve().parents[1]
PAIR = REPO / "datasets" / "emoji2lineart"


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_demo_pair_is_unpaired_colour_against_line_art():
    splits = {name: _pixels(PAIR / name) for name in ("trainA", "trainB", "testA", "testB")}
    assert {k: len(v) for k, v in splits.items()} == {"trainA": 250, "trainB": 250, "testA": 40, "testB": 40}
    assert not set(splits["trainA"]) & set(splits["trainB"])  # different emoji: genuinely unpaired
    assert set(splits["testA"]) == set(splits["testB"])  # paired test split, for the scores against testB
    for images in splits.values():
        assert all(a.shape == (64, 64, 3) and a.dtype == np.uint8 for a in images.values())

    def chroma(images):  # mean of (max - min over R, G, B): 0 for grey pixels
        return float(np.mean([np.ptp(a.astype(int), axis=2).mean() for a in images.values()]))

    def ink(images):  # share of dark pixels: the outlines
        return float(np.mean([(a.max(axis=2) < 64).mean() for a in images.values()]))

    # A is coloured; B is black lines on white (anti-aliased grey edges only), with ink in every image.
    assert chroma(splits["trainA"]) > 25 and chroma(splits["trainB"]) < 1
    assert min((a.max(axis=2) < 64).mean() for a in splits["trainB"].values()) > 0.01 and ink(splits["trainB"]) < 0.3
    licence = (PAIR / "LICENSE.md").read_text()
    assert "CC BY-SA 4.0" in licence and "All emojis designed by [OpenMoji]" in licence


def _make_demo(demo: Path, data: Path) -> list[list[str]]:
    """The ``cyclegan`` and ``python`` commands ``make demo`` runs, as make itself expands them
    (``make -n``), with the run folder and the data folder moved."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-n", "--no-print-directory", "demo", f"DEMO={demo}", f"DEMO_DATA={data}"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.replace("\\\n", " ").splitlines() if line.strip()]
    return [argv for argv in commands if Path(argv[0]).name in ("cyclegan", "python")]


def _subset(folder: Path, n_train: int = 4, n_test: int = 2) -> Path:
    """The first images of each split of the bundled pair (the demo's recipe on 4 + 4, in seconds)."""
    for split, n in (("trainA", n_train), ("trainB", n_train), ("testA", n_test), ("testB", n_test)):
        (folder / split).mkdir(parents=True)
        for path in sorted((PAIR / split).glob("*.png"))[:n]:
            shutil.copy(path, folder / split / path.name)
    return folder


def _images(folder: Path) -> torch.Tensor:
    """The PNGs of ``folder`` as the models see them: (N, 3, H, W) in [-1, 1]."""
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_make_demo_trains_both_models_alike_but_for_a_weak_a_to_a_cycle(tmp_path, monkeypatch):
    data, demo = _subset(tmp_path / "pair"), tmp_path / "demo"
    commands = _make_demo(demo, data)
    assert [c[1] for c in commands if Path(c[0]).name == "cyclegan"] == ["fit", "fit", "compare"]
    cyc, m1 = (c[1:] for c in commands[:2])
    assert _value(cyc, "--config").endswith("cyclegan.yaml") and _value(m1, "--config").endswith("method1.yaml")
    # The same recipe, data, seed and W&B group for both; each its own checkpoint folder.
    strip = lambda argv: [a for a in argv[3:] if "lambda_a" not in a and a != "2" and "checkpoints" not in a]  # noqa: E731
    assert strip(cyc) == strip(m1) and _value(cyc, "--trainer.logger.init_args.group") == "emoji2lineart"

    monkeypatch.chdir(REPO)  # the demo's config paths are relative to the repository
    short = ["--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    before = cli.build_cli([*cyc[1:], *short], run=False).model  # the same seed: the weights training starts from
    trained = cli.build_cli([*cyc, *short])
    model = trained.model
    assert trained.trainer.global_step == 2

    # Every network of the demo learned: most weight tensors of each of G_AB, G_BA, D_A, D_B moved.
    # (Most, not all: in the fast U-Net the innermost block works at 1x1 and 2x2 px, where its
    # instance norm outputs zeros, so 4 of a generator's 24 tensors get no gradient.)
    for net in ("G_AB", "G_BA", "D_A", "D_B"):
        start, end = getattr(before, net).state_dict(), getattr(model, net).state_dict()
        moved = [k for k in start if start[k].is_floating_point() and not torch.equal(start[k], end[k].to(start[k].dtype))]
        assert len(moved) >= 0.75 * len(start), f"{net}: only {len(moved)} of {len(start)} tensors changed"

    # The demo's --model.init_args.lambda_a weighs the A->B->A cycle (and A's identity term), the
    # published 10 the B->A->B one: checked against the losses computed by hand.
    lambda_a, lambda_b = float(_value(cyc, "--model.init_args.lambda_a")), 10.0
    assert lambda_a != lambda_b
    a, b = _images(data / "trainA"), _images(data / "trainB")
    model.eval()
    with torch.no_grad():
        losses = model.generator_losses(a, b).losses
        G, F = model.G_AB, model.G_BA
        by_hand = {"loss_cycle_a": lambda_a * (F(G(a)) - a).abs().mean(),
                   "loss_cycle_b": lambda_b * (G(F(b)) - b).abs().mean(),
                   "loss_idt_a": lambda_a * 0.5 * (F(a) - a).abs().mean(),
                   "loss_idt_b": lambda_b * 0.5 * (G(b) - b).abs().mean()}
    for key, value in by_hand.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_make_demo_compares_both_and_its_last_step_shows_both(tmp_path, monkeypatch):
    """The demo's commands as make runs them (2 iterations each, on 4 + 4 images): two checkpoints,
    one comparison with a verdict in report.html and in the W&B group, a strip and a JSON line of both."""
    data, demo = _subset(tmp_path / "pair"), tmp_path / "demo"
    commands = _make_demo(demo, data)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    short = ["--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--samples.every_n_steps", "1"]
    for argv in commands[:2]:
        cli.build_cli([*argv[1:], *short])
    compare = commands[2][1:]
    assert cli.run([*compare, "--quiet", "--kid-subset-size", "2", "--kid-subsets", "5"]) == 0
    report = (demo / "compare" / "report.html").read_text()
    metrics = json.loads((demo / "compare" / "metrics.json").read_text())
    assert metrics["verdict"] and metrics["verdict"] in report.replace("&#x27;", "'")
    assert metrics["card"]["translate_size"] == 64  # the size both were trained at, without --size
    assert "translated at 64x64 (the size the models were trained at)" in report
    assert [k for k, v in metrics["kinds"].items() if v == "model"] == ["cyclegan", "method1"]
    runs = sorted((demo / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # two trainings and the comparison, side by side
    from wandb_records import run_info
    infos = [run_info(next(r.glob("run-*.wandb"))) for r in runs]
    assert {i.run_group for i in infos} == {"emoji2lineart"}

    # Each training run's sample grids: titled, one per sampling point (steps 1 and 2).
    for kind in ("cyclegan", "method1"):
        (folder,) = (demo / kind).iterdir()
        assert [p.name for p in sorted((folder / "samples").glob("*.png"))] == ["step_0000001.png", "step_0000002.png"]

    script = commands[3]
    result = subprocess.run([sys.executable, *script[1:]], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line["models"]) == {"cyclegan", "method1"} and line["verdict"] == metrics["verdict"]
    assert line["models"]["cyclegan"]["cycle_rmse"] is not None and line["models"]["method1"]["cycle_rmse"] is None
    sheet = np.asarray(Image.open(line["strip"]).convert("RGB"))
    assert sheet.shape[0] == 2 + 4 * 66  # rows: input, CycleGAN, method 1, true line art
    assert sheet.shape[1] > 2 + 2 * 66 + 30  # 2 test images and the row labels' strip


def test_demo_script_writes_a_labelled_strip_of_each_model_and_one_json_line(tmp_path):
    from cyclegan.training.method1 import Method1

    inputs, truth = tmp_path / "in", tmp_path / "truth"
    rng = np.random.default_rng(0)
    drawn = {}
    for name in ("a.png", "b.png", "c.png"):
        for folder in (inputs, truth):
            folder.mkdir(parents=True, exist_ok=True)
            drawn[folder, name] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(drawn[folder, name]).save(folder / name)
    model = Method1(generator=cyclegan.GeneratorConfig(ngf=4, n_blocks=1))
    checkpoint = tmp_path / "m1.ckpt"
    torch.save({"translator": translator_meta(model), "state_dict": model.state_dict()}, checkpoint)
    metrics = tmp_path / "metrics.json"
    row = {"kid_mean": 0.0141, "kid_std": 0.004, "layout_corr": 0.9}
    metrics.write_text(json.dumps({
        "card": {"feature_extractor": "Inception-v3", "kid_subset_size": 40, "translate_size": 64},
        "kinds": {"method1": "model", "ref: input unchanged": "reference"}, "verdict": "method1 wins.",
        "summary": {"method1": row, "ref: input unchanged": {"kid_mean": 0.0441, "kid_std": 0.0037,
                                                             "layout_corr": 1.0}},
    }))
    strip = tmp_path / "strip.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "demo.py"), "--input", str(inputs), "--target", str(truth),
         "--checkpoint", f"method 1={checkpoint}", "--metrics", str(metrics), "--strip", str(strip), "--count", "2"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["strip_columns"] == 2 and line["verdict"] == "method1 wins." and line["size"] == 64
    assert line["models"] == {"method1": {"kid": 0.0141, "kid_std": 0.004, "layout_corr": 0.9, "cycle_rmse": None}}
    assert line["input_unchanged"] == {"kid": 0.0441, "kid_std": 0.0037, "layout_corr": 1.0, "cycle_rmse": None}
    sheet = np.asarray(Image.open(strip).convert("RGB"))
    label = sheet.shape[1] - (2 + 2 * 66)
    assert sheet.shape[0] == 2 + 3 * 66 and label > 20  # rows: input, method 1, true B; labels at the left
    for col, name in enumerate(("a.png", "b.png")):
        x = label + 2 + col * 66
        np.testing.assert_array_equal(sheet[2:66, x:x + 64], drawn[inputs, name])  # top row: the input
        np.testing.assert_array_equal(sheet[2 + 2 * 66:, x:x + 64][:64], drawn[truth, name])  # bottom: the truth
    labels = [sheet[2 + r * 66: 66 + r * 66, :label] for r in range(3)]
    assert all((band < 100).any() for band in labels) and len({band.tobytes() for band in labels}) == 3


def test_demo_script_refuses_metrics_without_the_input_row(tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "in" / "a.png")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"summary": {"cyclegan": {}}, "kinds": {"cyclegan": "model"}}))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "demo.py"), "--input", str(tmp_path / "in"), "--checkpoint",
         "x=none.ckpt", "--metrics", str(metrics), "--strip", str(tmp_path / "s.png")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(metrics) in result.stderr and "ref: input unchanged" in result.stderr


def test_the_install_prints_no_deprecation_of_the_project_and_fetches_no_pip():
    """``license`` as an SPDX string (PEP 639; setuptools 77 reads it: the table form made it print a
    deprecation three times per install), and the Makefile's venv keeps the pip it came with."""
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "BSD-3-Clause"
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77
    assert "upgrade pip" not in (REPO / "Makefile").read_text().replace("\\\n", " ")
