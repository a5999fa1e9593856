"""bench/gpu.py, the prepared GPU run, works end to end: its --smoke runs the same code on the CPU
at tiny sizes and reports every number the GPU run reports."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu():
    # Imported by its own name from bench/, as a spawned measuring process imports it again.
    sys.path.insert(0, str(REPO / "bench"))
    return importlib.import_module("gpu")


def test_smoke_reports_training_data_loading_and_conversion(gpu, capsys):
    report = gpu.main(["--smoke"])
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == report  # the last line is the JSON record

    assert report["smoke"] and report["device"] == "cpu" and report["size"] == 32
    for batch in ("batch1", "batch2"):
        rows = report["train"][batch]
        assert set(rows) == {"reference_fp32", "ours_default", "ours_fp32"}
        for row in rows.values():
            assert row["ms"] > 0 and row["peak_mb"] > 0
        assert rows["reference_fp32"]["x_reference"] == 1.0
        assert rows["ours_fp32"]["x_reference"] == pytest.approx(rows["reference_fp32"]["ms"] / rows["ours_fp32"]["ms"], rel=0.02)

    data = report["data"]
    assert data["batch"] == 2 and data["ms_per_it"] > 0 and data["it_per_s"] == pytest.approx(1000 / data["ms_per_it"], rel=0.01)
    assert 1 <= data["workers"] <= 4 and data["pin_memory"] is torch.cuda.is_available()
    assert data["item_decode_augment_ms"] > 0 and 0 < data["gpu_busy"] <= 1
    assert data["in_memory_ms"] == report["train"]["batch2"]["ours_default"]["ms"]

    for size in ("64x64", "96x64"):
        row = report["convert"][size]
        assert row["plain"] > 0 and row["defaults"] > 0
        assert row["x_plain"] == pytest.approx(row["defaults"] / row["plain"], abs=0.01)
    norm = report["instance_norm_one_image_channels_last_grad_error"]
    assert norm["torch_kernel"] >= 0 and norm["patchnce_gather"] < 1e-4  # ours is right whatever the kernel does


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_a_gpu_it_says_so_in_one_line(gpu):
    with pytest.raises(SystemExit, match="no CUDA GPU here; bench/gpu.py --smoke"):
        gpu.main([])
