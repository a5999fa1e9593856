"""``cyclegan export``: TorchScript and ONNX with dynamic height and width, the parity check,
and ``cyclegan translate`` running the exported file."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import cyclegan.inference.export as export
from cyclegan.cli import main as cli_main, run as cli_run
from cyclegan.models.networks import GeneratorConfig
from cyclegan.inference.translator import load_translator
from conftest import write_images
from test_translate import generator, make_checkpoint, main as translate_main

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
FORMATS = ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(not HAVE_ONNX, reason="needs the onnx extra"))]
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rgb.ckpt")


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_passes_parity_and_translate_runs_the_exported_file(ckpt, tmp_path, capsys, fmt):
    out = tmp_path / f"g{SUFFIX[fmt]}"
    images = tmp_path / "in"
    write_images(images, 2, size=(45, 31))
    with pytest.raises(SystemExit) as exit_:  # registered as a `cyclegan` command
        cli_main(["export", "--checkpoint", str(ckpt), "--direction", "b2a", "--format", fmt, "--output", str(out),
                  "--images", str(images)])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert f"parity: max |{fmt} - pytorch| = " in printed and "inputs and 2 images (tolerance" in printed
    assert out.is_file()
    assert not list(tmp_path.glob(".*tmp*"))

    exported = load_translator(out)
    assert exported.metadata["direction"] == "b2a" and exported.stride == 4
    g = generator(ckpt, "b2a")
    x = torch.rand(3, 3, 36, 20) * 2 - 1  # batch, height and width unlike those used at export
    with torch.inference_mode():
        torch.testing.assert_close(exported.forward(x), g(x), atol=1e-4, rtol=0)

    src = images
    assert translate_main(["--checkpoint", str(out), "--input", str(src), "--output", str(tmp_path / "a"), "--quiet"]) == 0
    assert translate_main(["--checkpoint", str(ckpt), "--direction", "b2a", "--input", str(src),
                           "--output", str(tmp_path / "b"), "--quiet", "--precision", "32"]) == 0  # exports run fp32
    for name in ("img000.png", "img001.png"):
        a = np.asarray(Image.open(tmp_path / "a" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b" / name), dtype=int)
        assert a.shape == (31, 45, 3) and np.abs(a - b).max() <= 1  # rounding to uint8 at most

    # The exported file has one direction, and no instance-norm layers to tile with.
    capsys.readouterr()
    assert translate_main(["--checkpoint", str(out), "--direction", "a2b", "--input", str(src),
                           "--output", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {out} holds the 'b2a' generator, not 'a2b'"
    assert translate_main(["--checkpoint", str(out), "--tile", "32", "--input", str(src),
                           "--output", str(tmp_path / "c")]) == 2


def test_unet_torchscript_export_keeps_dynamic_sizes(tmp_path):
    ckpt = make_checkpoint(tmp_path / "unet.ckpt", config=GeneratorConfig(arch="unet", ngf=4, n_downs=5), kind="method1")
    out = tmp_path / "unet.pt"
    assert cli_run(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out)]) == 0
    exported = load_translator(out)
    assert exported.stride == 32
    y = exported.translate(torch.rand(1, 3, 40, 70) * 2 - 1)  # padded to 64x96 and cropped back
    assert y.shape == (1, 3, 40, 70)


def test_parity_failure_exits_1_and_writes_nothing(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "max_difference", lambda exported, net, images: 0.5)
    out = tmp_path / "g.pt"
    assert cli_run(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert "parity: max |torchscript - pytorch| = 5.00e-01 on random" in captured.out
    assert captured.err.strip() == f"error: the exported model differs from PyTorch by 5.00e-01 > 1e-04; {out} not written"
    assert list(tmp_path.iterdir()) == []


def test_export_errors_are_one_line(ckpt, tmp_path, capsys):
    method1 = make_checkpoint(tmp_path / "m1.ckpt", kind="method1")
    assert cli_run(["export", "--checkpoint", str(method1), "--direction", "b2a", "--format", "torchscript",
                        "--output", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "method1 checkpoint has no 'b2a' generator" in err
    assert cli_run(["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--format", "torchscript",
                        "--output", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint not found: {tmp_path / 'none.ckpt'}"
    assert not (tmp_path / "x.pt").exists()
