"""Training's sample grids: one per sampling point, every column titled in the PNG's own pixels."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.cli import build_cli
from cyclegan.data.grids import GAP, LINE, titled_grid, wrap

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CYCLEGAN_TITLES = ["real A", "A->B", "A->B->A", "real B", "B->A", "B->A->B"]


def _fit(model: str, root: Path, runs: Path, *extra: str):
    return build_cli([
        "fit", "--config", str(CONFIGS / f"{model}.yaml"), "--config", str(CONFIGS / "tiny.yaml"),
        "--data.root", str(root), "--trainer.default_root_dir", str(runs), "--seed_everything", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false", "--val_metrics.every_n_epochs", "0", *extra,
    ])


def _bands(grid: np.ndarray, n_columns: int, cell: int, rows: int = 2) -> tuple[int, list[np.ndarray]]:
    """The title band's height (below it: ``rows`` rows of cell + gap) and each column's part of it."""
    assert (grid.shape[1] - GAP) // (cell + GAP) == n_columns
    header = grid.shape[0] - GAP - rows * (cell + GAP)  # the 2 validation images of tiny_root's testA
    return header, [grid[:header, GAP + j * (cell + GAP): GAP + j * (cell + GAP) + cell] for j in range(n_columns)]


def test_one_grid_per_sampling_point_and_titled_columns(tiny_root, tmp_path):
    # 6 images of A: an epoch (and its validation) ends at steps 6 and 12; the cadence is 4; the run stops at 7.
    grids = {}
    for model, titles in (("cyclegan", CYCLEGAN_TITLES), ("method1", ["real A", "A->B"])):
        cli = _fit(model, tiny_root, tmp_path / model, "--trainer.max_steps", "7", "--samples.every_n_steps", "4")
        folder = Path(cli.trainer.checkpoint_callback.dirpath).parent / "samples"
        assert [p.name for p in sorted(folder.glob("*.png"))] == ["step_0000004.png", "step_0000007.png"]
        columns = cli.model.sample_columns(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
        assert list(columns) == titles  # the protocol: ordered title -> (N, C, H, W)
        grids[model] = np.asarray(Image.open(folder / "step_0000007.png").convert("L")).astype(int)

    cell, wrapped = 32, max(len(wrap(t, 30)) for t in CYCLEGAN_TITLES)
    header, bands = _bands(grids["cyclegan"], 6, cell)
    assert header == 4 + LINE * wrapped  # a white band with the titles above the images
    for band in bands:
        assert (band < 100).sum() > 15 and (band > 200).mean() > 0.6  # black text on white
    for i in range(6):
        for j in range(i + 1, 6):
            assert (bands[i] != bands[j]).any(), (CYCLEGAN_TITLES[i], CYCLEGAN_TITLES[j])
    # method 1's grid has its own two titles: the same pixels as CycleGAN's first two ("real A", "A->B").
    m1_header, m1_bands = _bands(grids["method1"], 2, cell)
    assert m1_header == 4 + LINE  # one line: both titles fit a 32 px column
    for j in range(2):
        np.testing.assert_array_equal(m1_bands[j], bands[j][:m1_header])


def test_titled_grid_takes_any_number_of_columns_and_grayscale():
    images = torch.full((2, 1, 64, 64), 128, dtype=torch.uint8)
    columns = [(f"column {k}", images) for k in range(5)]
    grid = np.asarray(titled_grid(columns, labels=["first", "second"]).convert("L")).astype(int)
    strip = grid.shape[1] - (GAP + 5 * (64 + GAP))
    assert strip > 20 and grid.shape[0] == 4 + LINE + GAP + 2 * (64 + GAP)
    bands = [grid[:4 + LINE, strip + GAP + k * 66: strip + GAP + k * 66 + 64] for k in range(5)]
    assert all((b < 100).any() for b in bands) and len({b.tobytes() for b in bands}) == 5
    assert (grid[4 + LINE + GAP: 4 + LINE + GAP + 64, strip + GAP: strip + GAP + 64] == 128).all()


@pytest.mark.parametrize("title", ["A->B->A", "a much longer column title"])
def test_long_titles_wrap_to_the_column(title):
    lines = wrap(title, 30)
    assert "".join(lines) == title and len(lines) > 1
