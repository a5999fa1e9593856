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

from cyclegan.cli import app as cli
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


def _make_demo(demo: Path, data: Path) -> dict[str, list[str]]:
    """The ``cyclegan`` commands ``make demo`` runs, as make itself expands them (``make -n``), with
    the run folder and the data folder moved; by subcommand, without the program name."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-n", "--no-print-directory", "demo", f"DEMO={demo}", f"DEMO_DATA={data}"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.replace("\\\n", " ").splitlines() if line.strip()]
    return {argv[1]: argv[1:] for argv in commands if len(argv) > 1 and Path(argv[0]).name == "cyclegan"}


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


def test_make_demo_trains_both_directions_with_a_weak_a_to_a_cycle_and_translates(tmp_path, monkeypatch):
    data, demo = _subset(tmp_path / "pair"), tmp_path / "demo"
    commands = _make_demo(demo, data)
    assert {"fit", "translate", "evaluate"} <= set(commands), commands
    fit = commands["fit"]
    monkeypatch.chdir(REPO)  # the demo's config paths are relative to the repository
    short = ["--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    before = cli.build_cli([*fit[1:], *short], run=False).model  # the same seed: the weights training starts from
    trained = cli.build_cli([*fit, *short])
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
    lambda_a, lambda_b = float(fit[fit.index("--model.init_args.lambda_a") + 1]), 10.0
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

    # The demo's next step translates the held-out inputs with the checkpoint it left.
    translate = commands["translate"]
    assert cli.run(translate) == 0
    out = Path(translate[translate.index("--output") + 1])
    inputs = sorted(p.name for p in (data / "testA").glob("*.png"))
    assert sorted(p.name for p in out.glob("*.png")) == inputs
    with torch.no_grad():
        expected = ((G(_images(data / "testA")) + 1) * 127.5).clamp(0, 255).permute(0, 2, 3, 1).numpy()
    for name, want in zip(inputs, expected):
        got = np.asarray(Image.open(out / name).convert("RGB")).astype(float)
        assert got.shape == (64, 64, 3) and np.abs(got - want).max() <= 2, name  # the generator just trained


def test_demo_script_writes_inputs_over_outputs_and_one_json_line(tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out" / "sub"
    rng = np.random.default_rng(0)
    drawn = {}
    for name in ("a.png", "b.png", "c.png"):
        for folder in (inputs, outputs):
            folder.mkdir(parents=True, exist_ok=True)
            drawn[folder, name] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(drawn[folder, name]).save(folder / name)
    (outputs / "c.png").unlink()  # an input without a translation is left out of the strip
    metrics = tmp_path / "metrics.json"
    row = {"kid_mean": 0.0141, "kid_std": 0.004, "layout_corr": 0.9, "cycle_rmse": 45.4}
    metrics.write_text(json.dumps({
        "card": {"feature_extractor": "Inception-v3", "kid_subset_size": 40},
        "kinds": {"cyclegan": "model", "ref: input unchanged": "reference"},
        "summary": {"cyclegan": row, "ref: input unchanged": {"kid_mean": 0.0441, "kid_std": 0.0037,
                                                              "layout_corr": 1.0}},
    }))
    strip = tmp_path / "strip.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "demo.py"), "--input", str(inputs), "--output", str(outputs),
         "--reference", str(tmp_path), "--metrics", str(metrics), "--strip", str(strip)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["strip_columns"] == 2
    assert line["translated"] == {"kid": 0.0141, "kid_std": 0.004, "layout_corr": 0.9, "cycle_rmse": 45.4}
    assert line["input_unchanged"] == {"kid": 0.0441, "kid_std": 0.0037, "layout_corr": 1.0, "cycle_rmse": None}
    sheet = np.asarray(Image.open(strip).convert("RGB"))
    assert sheet.shape == (64 * 2 + 4, 64 * 2 + 4, 3)
    for col, name in enumerate(("a.png", "b.png")):
        x = col * 68
        np.testing.assert_array_equal(sheet[:64, x:x + 64], drawn[inputs, name])  # top row: the input
        np.testing.assert_array_equal(sheet[68:, x:x + 64], drawn[outputs, name])  # bottom row: its translation
    assert (sheet[64:68] == 255).all()  # a white gap between the rows


def test_demo_script_refuses_metrics_without_the_input_row(tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "in" / "a.png")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"summary": {"cyclegan": {}}, "kinds": {"cyclegan": "model"}}))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "demo.py"), "--input", str(tmp_path / "in"), "--output",
         str(tmp_path / "in"), "--reference", str(tmp_path), "--metrics", str(metrics), "--strip",
         str(tmp_path / "s.png")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(metrics) in result.stderr and "ref: input unchanged" in result.stderr
