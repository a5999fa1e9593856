"""``make demo``: the bundled pair it trains on, its recipe, and its last step (strip + JSON line)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _makefile_fit_args() -> list[str]:
    """The `cyclegan fit` arguments of the Makefile's demo target, with its variables filled in."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.+)$", text, re.M))
    line = next(ln for ln in text.splitlines() if ln.startswith("\t") and "cyclegan fit" in ln)
    line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), line)
    return shlex.split(line.split("cyclegan fit", 1)[1])


def test_make_demo_trains_the_fast_recipe_on_the_bundled_pair_with_a_weak_a_to_a_cycle(tmp_path):
    args = _makefile_fit_args()
    assert args[args.index("--data.root") + 1] == "datasets/emoji2lineart"
    args[args.index("--data.root") + 1] = str(PAIR)
    args[args.index("--trainer.default_root_dir") + 1] = str(tmp_path)
    args = [str(REPO / a) if a.startswith("configs/") else a for a in args]
    built = cli.build_cli([*args, "--trainer.logger", "false"], run=False)
    hp = built.model.hparams
    # lambda_a 2: line art cannot say which colours to paint back; at 10 the translator hides them as tints.
    assert (hp.lambda_a, hp.lambda_b, hp.lambda_identity) == (2.0, 10.0, 0.5)
    assert hp.generator["arch"] == "unet" and built.datamodule.hparams.batch_size == 4
    assert built.trainer.max_epochs == 20


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
