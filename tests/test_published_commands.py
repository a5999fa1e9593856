"""Files of the authors' code wherever a checkpoint is accepted (load_generator, load_translator,
translate, export, evaluate), ``pretrained:NAME``, ``cyclegan pretrained`` and
``cyclegan export --format pth``. No network: a local HTTP server stands in for theirs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cyclegan
from conftest import write_images
from cyclegan.inference import pretrained
from cyclegan.inference.checkpoints import sha256_file
from cyclegan.cli import run as cli_run
from cyclegan.errors import CheckpointError
from cyclegan.models.networks import GeneratorConfig, build_generator
from cyclegan.inference.translator import load_translator, translate_image
from test_download import server, unused_port  # noqa: F401 (fixture)
from test_pretrained import NAMES, cache, mirror, model_bytes  # noqa: F401 (fixtures)
from test_published import _one_thread, authors_state, random_net, save  # noqa: F401 (fixture)
from test_translate import make_checkpoint, manifest

TINY = GeneratorConfig(ngf=8, n_blocks=2)


@pytest.fixture
def authors_file(tmp_path):
    """An authors'-layout generator saved before PyTorch 0.4 (with instance-norm buffers), and ours."""
    ours = random_net(build_generator(TINY, input_nc=3, output_nc=3))
    return save(authors_state(ours, pre_0_4=True), tmp_path / "latest_net_G_A.pth", legacy=True), ours


def test_load_generator_and_load_translator_read_an_authors_file(authors_file):
    path, ours = authors_file
    x = torch.rand(1, 3, 36, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(cyclegan.load_generator(path)(x), ours(x))
    translator = load_translator(path, device="cpu", inverse=True)
    assert translator.kind == "published" and translator.inverse is None and translator.path == path
    assert translator.metadata["generator"]["n_blocks"] == 2 and translator.stride == 4
    with pytest.raises(CheckpointError, match="holds a single generator, so it has no 'b2a' direction"):
        cyclegan.load_generator(path, "b2a")


def test_translate_with_an_authors_file_gives_our_generators_images(authors_file, tmp_path, capsys):
    path, ours = authors_file
    src = tmp_path / "in"
    write_images(src, 2, size=(45, 31))
    argv = ["translate", "--checkpoint", str(path), "--input", str(src), "--workers", "0", "--quiet", "--precision", "32"]
    assert cli_run([*argv, "--output", str(tmp_path / "out")]) == 0
    for image in sorted(src.glob("*.png")):
        expected = np.asarray(translate_image(ours, Image.open(image)))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / image.name)), expected)
    assert {row["checkpoint_sha256"] for row in manifest(tmp_path / "out" / "manifest.csv")} == {sha256_file(path)}
    capsys.readouterr()

    # --direction: a2b is what such a file does anyway (a note); b2a it cannot do (an error).
    assert cli_run([*argv, "--output", str(tmp_path / "out2"), "--direction", "a2b"]) == 0
    assert "note: --direction has no meaning for" in capsys.readouterr().err
    assert cli_run([*argv, "--output", str(tmp_path / "out3"), "--direction", "b2a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "single generator" in err[0]
    assert not (tmp_path / "out3").exists()


def test_checkpoint_pretrained_name_downloads_once_then_reads_the_cache(mirror, cache, tmp_path, model_bytes):
    src = tmp_path / "in"
    write_images(src, 1, size=(32, 32))
    argv = ["translate", "--checkpoint", "pretrained:horse2zebra", "--input", str(src), "--workers", "0", "--quiet"]
    assert cli_run([*argv, "--output", str(tmp_path / "out")]) == 0
    assert (cache / "horse2zebra.pth").read_bytes() == model_bytes
    assert manifest(tmp_path / "out" / "manifest.csv")[0]["checkpoint_sha256"] == sha256_file(cache / "horse2zebra.pth")
    assert cli_run([*argv, "--output", str(tmp_path / "out2")]) == 0
    assert mirror.seen_ranges == [None]  # one download


def test_pretrained_command_lists_fetches_and_fails_offline_in_one_line(mirror, cache, capsys, monkeypatch):
    assert cli_run(["pretrained", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(pretrained.PRETRAINED_MODELS) and sorted(pretrained.PRETRAINED_MODELS) == sorted(NAMES)

    assert cli_run(["pretrained", "horse2zebra", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "horse2zebra.pth")

    monkeypatch.setenv(pretrained.URL_ENV_VAR, f"http://127.0.0.1:{unused_port()}/models")
    assert cli_run(["pretrained", "map2sat", "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach 127.0.0.1") and "map2sat.pth by hand" in err[0]
    assert captured.out == "" and not (cache / "map2sat.pth").exists()

    assert cli_run(["pretrained", "nosuch"]) == 2
    assert "no published model 'nosuch'" in capsys.readouterr().err


def test_export_pth_writes_their_layout_and_round_trips_through_the_loader(tmp_path, capsys):
    config = GeneratorConfig(ngf=8, n_blocks=6)
    ckpt = make_checkpoint(tmp_path / "run.ckpt", config=config)
    out = tmp_path / "g_b2a.pth"
    assert cli_run(["export", "--checkpoint", str(ckpt), "--direction", "b2a", "--format", "pth", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the authors' test.py runs it with: --netG resnet_6blocks --ngf 8 --norm instance --no_dropout" in printed
    state = torch.load(out, weights_only=True)
    assert any(".conv_block." in k for k in state) and not any(".block." in k for k in state)

    x = torch.rand(2, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        assert torch.equal(cyclegan.load_generator(out)(x), cyclegan.load_generator(ckpt, "b2a")(x))
    # and back out to another format from their layout
    assert cli_run(["export", "--checkpoint", str(out), "--format", "torchscript", "--output", str(tmp_path / "g.pt")]) == 0


def test_export_pth_of_a_generator_their_code_lacks_says_so(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "run.ckpt", config=TINY)  # 2 residual blocks: no netG name for it
    assert cli_run(["export", "--checkpoint", str(ckpt), "--format", "pth", "--output", str(tmp_path / "g.pth")]) == 0
    assert "note: the authors' code has no resnet generator (2 blocks" in capsys.readouterr().out


def test_evaluate_scores_an_authors_file(authors_file, tmp_path, capsys):
    path, _ = authors_file
    write_images(tmp_path / "evalA", 3, size=(32, 32), seed=3)
    out = tmp_path / "eval"
    assert cli_run(["evaluate", "--checkpoint", str(path), "--input", str(tmp_path / "evalA"), "--size", "32",
                    "--features", "none", "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert "published" in summary
