"""``cyclegan translate`` and the Python API: tree mirroring, full resolution, channels and alpha,
resume, unreadable files, path safety, tiling with whole-image instance-norm statistics."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.cli import main as cli_main, run as cli_run
from cyclegan.data.images import prepare_image
from cyclegan.models.networks import GeneratorConfig, build_generator
from cyclegan.inference.tiling import tiled_forward
from cyclegan.inference.checkpoints import sha256_file
from cyclegan.devices import inference_precision
from cyclegan.inference.translator import Translator, translate_image, translate_tensor
from conftest import write_images

TINY = GeneratorConfig(ngf=8, n_blocks=2)


def main(argv: list[str]) -> int:
    """``cyclegan translate ARGV``'s exit code."""
    return cli_run(["translate", *argv])


def make_checkpoint(path: Path, *, kind="cyclegan", nc=3, config=TINY, seed=0) -> Path:
    """A checkpoint in the layout training writes (``translator`` metadata + prefixed state dict)."""
    torch.manual_seed(seed)
    directions = {"a2b": "G_AB", "b2a": "G_BA"} if kind == "cyclegan" else {"a2b": "G_AB"}
    state = {}
    for name in directions.values():
        net = build_generator(config, input_nc=nc, output_nc=nc)
        state.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    meta = {"kind": kind, "generator": asdict(config), "input_nc": nc, "output_nc": nc, "directions": directions}
    torch.save({"state_dict": state, "translator": meta}, path)
    return path


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rgb.ckpt")


@pytest.fixture(scope="session")
def gray_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "gray.ckpt", kind="method1", nc=1)


def generator(ckpt: Path, direction="a2b"):
    from cyclegan import load_generator

    return load_generator(ckpt, direction)


def run(ckpt: Path, src: Path, dst: Path, *extra: str) -> int:
    return main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(dst), "--workers", "0", "--quiet", *extra])


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def manifest(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def smooth_image(size, *, mode="RGB", seed=0) -> Image.Image:
    low = np.random.default_rng(seed).integers(0, 256, (5, 5, 4), dtype=np.uint8)
    return Image.fromarray(low, "RGBA").resize(size, Image.BICUBIC).convert(mode)


def test_mirrors_tree_with_same_stems_through_the_cli_with_workers(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src / "x" / "y", 2, ext="jpg")
    write_images(src, 1, prefix="top", ext="png")
    write_images(src / "x", 1, prefix="w", ext="webp")
    with pytest.raises(SystemExit) as exit_:  # registered as a `cyclegan` command
        cli_main(["translate", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(dst),
                  "--workers", "2", "--batch-size", "2", "--quiet"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == "converted 4, skipped-existing 0, failed 0"
    assert tree(dst) == {"x/y/img000.jpg", "x/y/img001.jpg", "top000.png", "x/w000.webp", "manifest.csv"}
    assert Image.open(dst / "x/y/img000.jpg").format == "JPEG"
    rows = manifest(dst / "manifest.csv")
    assert list(rows[0]) == ["input", "output", "width", "height", "status", "reason", "checkpoint_sha256", "settings"]
    assert {(r["status"], r["width"], r["height"], r["checkpoint_sha256"]) for r in rows} == {
        ("converted", "40", "40", sha256_file(ckpt))
    }
    assert {r["output"] for r in rows} == {str(dst / p) for p in tree(dst) - {"manifest.csv"}}

    assert run(ckpt, src, tmp_path / "png", "--format", "png") == 0
    assert tree(tmp_path / "png") == {"x/y/img000.png", "x/y/img001.png", "top000.png", "x/w000.png", "manifest.csv"}


def test_single_image_to_a_file_or_a_folder(ckpt, tmp_path):
    src = write_images(tmp_path / "in", 1)[0]
    assert run(ckpt, src, tmp_path / "one.jpg") == 0
    assert Image.open(tmp_path / "one.jpg").format == "JPEG"
    assert not (tmp_path / "manifest.csv").exists()  # no manifest beside a single output file
    assert run(ckpt, src, tmp_path / "folder") == 0
    assert tree(tmp_path / "folder") == {"img000.png", "manifest.csv"}


def test_full_resolution_of_odd_sizes_and_resize_of_the_short_side(ckpt, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    smooth_image((517, 333)).save(src / "odd.png")
    assert run(ckpt, src, dst) == 0
    out = Image.open(dst / "odd.png")
    assert out.size == (517, 333) and out.mode == "RGB"
    # The file holds exactly what the Python API gives, at the precision the CLI chose (bf16 where native).
    api = translate_image(generator(ckpt), Image.open(src / "odd.png"), precision=inference_precision("auto", "cpu"))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(api))

    assert run(ckpt, src, tmp_path / "small", "--resize", "24") == 0
    assert Image.open(tmp_path / "small" / "odd.png").size == (37, 24)  # 517 * 24 / 333 = 37.3


def test_resize_shrinks_by_area_average_and_enlarges_bicubic_as_training_does():
    image = smooth_image((90, 60), mode="RGBA")  # alpha is resized alike
    for short, flag in ((24, cv2.INTER_AREA), (120, cv2.INTER_CUBIC)):
        size = (round(90 * short / 60), short)
        array, alpha = prepare_image(image, channels=3, resize=short)
        composited, expected_alpha = prepare_image(image, channels=3)
        np.testing.assert_array_equal(array, cv2.resize(composited, size, interpolation=flag))
        np.testing.assert_array_equal(alpha, cv2.resize(expected_alpha, size, interpolation=flag))


def test_padding_to_the_stride_is_cropped_back_exactly(ckpt):
    g = generator(ckpt)
    x = torch.rand(2, 3, 32, 48) * 2 - 1  # already a multiple of the stride: nothing to pad
    with torch.inference_mode():
        expected = g(x)
    torch.testing.assert_close(translate_tensor(g, x), expected)
    y = translate_tensor(g, x[0, :, :29, :45])  # (C, H, W) works too
    assert y.shape == (3, 29, 45) and y.abs().max() <= 1
    assert translate_tensor(g, x[:1, :, :1, :3]).shape == (1, 3, 1, 3)  # smaller than the stride
    unet = build_generator(GeneratorConfig(arch="unet", ngf=4, n_downs=5), input_nc=3, output_nc=3).eval()
    assert translate_tensor(unet, x[:1, :, :5, :40]).shape == (1, 3, 5, 40)  # padded to 32x64 in several reflections


def test_batches_of_mixed_sizes_give_what_one_image_at_a_time_gives(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate([(40, 24), (24, 40), (40, 24), (33, 17), (40, 24), (24, 40), (40, 24)]):
        smooth_image(size, seed=i).save(src / f"{i}.png")
    assert run(ckpt, src, tmp_path / "out", "--batch-size", "3", "--precision", "32") == 0  # batching, not bf16
    g = generator(ckpt)
    for i in range(7):
        expected = np.asarray(translate_image(g, Image.open(src / f"{i}.png")), dtype=int)
        got = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"), dtype=int)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1, i


def test_grayscale_model_gives_grayscale_and_alpha_is_carried_over(ckpt, gray_ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    smooth_image((30, 20), mode="L").save(src / "gray.png")
    smooth_image((30, 20), mode="LA").save(src / "gray_alpha.png")
    assert run(gray_ckpt, src, tmp_path / "g") == 0
    assert Image.open(tmp_path / "g" / "gray.png").mode == "L"
    gray_alpha = Image.open(tmp_path / "g" / "gray_alpha.png")
    assert gray_alpha.mode == "LA"
    np.testing.assert_array_equal(gray_alpha.getchannel("A"), Image.open(src / "gray_alpha.png").getchannel("A"))

    rgba = tmp_path / "rgba"
    rgba.mkdir()
    smooth_image((36, 28), mode="RGBA", seed=3).save(rgba / "t.png")
    assert run(ckpt, rgba, tmp_path / "c") == 0
    out = Image.open(tmp_path / "c" / "t.png")
    assert out.mode == "RGBA" and out.size == (36, 28)
    np.testing.assert_array_equal(out.getchannel("A"), Image.open(rgba / "t.png").getchannel("A"))
    # Colour comes from the image composited onto white, as in training.
    on_white = Image.alpha_composite(Image.new("RGBA", (36, 28), "white"), Image.open(rgba / "t.png")).convert("RGB")
    rgb = translate_image(generator(ckpt), on_white, precision=inference_precision("auto", "cpu"))
    np.testing.assert_array_equal(np.asarray(out)[..., :3], np.asarray(rgb))

    assert run(ckpt, rgba, tmp_path / "j", "--format", "jpg") == 0  # jpg has no alpha: dropped, and said so
    assert Image.open(tmp_path / "j" / "t.jpg").mode == "RGB"
    assert manifest(tmp_path / "j" / "manifest.csv")[0]["reason"] == "alpha dropped: jpg cannot hold it"


def test_exif_orientation_is_applied(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    smooth_image((40, 24)).save(src / "phone.jpg", exif=exif)
    assert run(ckpt, src, tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "phone.jpg").size == (24, 40)


def test_resume_skips_finished_files_and_overwrite_redoes_them(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    assert run(ckpt, src, dst) == 0
    old = 1_000_000_000
    for p in dst.glob("*.png"):
        os.utime(p, (old, old))
    (dst / "img001.png").unlink()  # as if interrupted before this one
    capsys.readouterr()
    assert run(ckpt, src, dst) == 0
    assert capsys.readouterr().out.strip() == "converted 1, skipped-existing 2, failed 0"
    assert {p.name: p.stat().st_mtime == old for p in dst.glob("*.png")} == {
        "img000.png": True, "img001.png": False, "img002.png": True,
    }
    assert [r["status"] for r in manifest(dst / "manifest.csv")] == ["exists", "converted", "exists"]

    assert run(ckpt, src, dst, "--overwrite") == 0
    assert capsys.readouterr().out.strip() == "converted 3, skipped-existing 0, failed 0"
    assert all(p.stat().st_mtime != old for p in dst.glob("*.png"))
    assert not [p for p in dst.rglob("*") if ".tmp-" in p.name]  # atomic writes leave no temporaries


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_outputs_of_another_checkpoint_or_other_settings_are_refused_not_kept(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    other = make_checkpoint(tmp_path / "other.ckpt", seed=1)
    assert run(ckpt, src, dst) == 0
    before = _bytes(dst)
    capsys.readouterr()
    for argv in ([], ["--resize", "16"], ["--direction", "b2a"]):  # another checkpoint; other settings
        assert run(other if not argv else ckpt, src, dst, *argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1
        assert captured.err.startswith(f"error: {dst} already holds outputs this checkpoint and these settings did not write")
        assert "--overwrite" in captured.err and "--output" in captured.err
        assert _bytes(dst) == before  # images and manifest untouched
    assert "written by checkpoint" in run_err(other, src, dst, capsys)

    assert run(ckpt, src, dst) == 0  # the same checkpoint and settings: kept
    assert capsys.readouterr().out.strip() == "converted 0, skipped-existing 3, failed 0"
    assert {k: v for k, v in _bytes(dst).items() if k != "manifest.csv"} == {
        k: v for k, v in before.items() if k != "manifest.csv"}
    assert {r["status"] for r in manifest(dst / "manifest.csv")} == {"exists"}

    assert run(other, src, dst, "--overwrite") == 0
    assert capsys.readouterr().out.strip() == "converted 3, skipped-existing 0, failed 0"
    after = _bytes(dst)
    assert all(after[k] != before[k] for k in before)  # re-translated, manifest included
    assert {r["checkpoint_sha256"] for r in manifest(dst / "manifest.csv")} == {sha256_file(other)}
    assert run(other, src, dst) == 0


def run_err(ckpt: Path, src: Path, dst: Path, capsys) -> str:
    run(ckpt, src, dst)
    return capsys.readouterr().err


def test_an_output_without_a_manifest_entry_is_refused(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    write_images(dst, 1)  # img000.png of unknown origin
    before = _bytes(dst)
    assert run(ckpt, src, dst) == 2
    assert "img000.png: no manifest entry (unknown origin)" in capsys.readouterr().err
    assert _bytes(dst) == before and not (dst / "manifest.csv").exists()
    assert run(ckpt, src, dst, "--overwrite") == 0
    rows = manifest(dst / "manifest.csv")
    assert [r["status"] for r in rows] == ["converted", "converted"] and _bytes(dst)["img000.png"] != before["img000.png"]


def test_manifest_keeps_rows_of_outputs_this_run_did_not_touch(ckpt, tmp_path):
    dst = tmp_path / "out"
    a, b = write_images(tmp_path / "a", 1)[0], write_images(tmp_path / "b", 1, prefix="other")[0]
    assert run(ckpt, a.parent, dst) == 0
    assert run(ckpt, b.parent, dst) == 0
    assert {Path(r["output"]).name for r in manifest(dst / "manifest.csv")} == {"img000.png", "other000.png"}


def test_animated_gif_gives_its_first_frame_as_png_and_says_so(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    frames = [smooth_image((32, 24), seed=s) for s in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[1].save(src / "still.gif")
    assert run(ckpt, src, dst, "--precision", "32") == 0  # exact against translate_image's float32
    assert capsys.readouterr().out.strip() == (
        "converted 2, skipped-existing 0, failed 0; 1 animated GIF(s): first frame only")
    assert tree(dst) == {"anim.png", "still.png", "manifest.csv"}
    with Image.open(src / "anim.gif") as gif:
        first = gif.convert("RGB")
    expected = translate_image(generator(ckpt), first)
    assert np.array_equal(np.asarray(Image.open(dst / "anim.png")), np.asarray(expected))
    reasons = {Path(r["output"]).name: r["reason"] for r in manifest(dst / "manifest.csv")}
    assert reasons == {"anim.png": "animated GIF (3 frames): first frame only", "still.png": ""}
    assert run(ckpt, src, dst, "--format", "jpg") == 0  # --format still decides
    assert {"anim.jpg", "still.jpg"} <= tree(dst)


def test_unreadable_file_is_reported_and_the_rest_converted(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    (src / "broken.png").write_bytes(b"not an image at all")
    assert run(ckpt, src, dst) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"skipped {src / 'broken.png'}: cannot read: not an image Pillow can decode"]
    assert captured.out.strip() == "converted 2, skipped-existing 0, failed 1"
    assert tree(dst) == {"img000.png", "img001.png", "manifest.csv"}
    assert {r["input"]: r["status"] for r in manifest(dst / "manifest.csv")}[str(src / "broken.png")] == "failed"


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_refuses_to_write_into_the_input(ckpt, tmp_path, capsys, where):
    src = tmp_path / "photos"
    write_images(src / "photos", 1)  # with OUT = IN's parent, OUT/photos/img000.png would be IN/img000.png
    write_images(src, 1)
    before = tree(src)
    dst = {"inside": src / "out", "same": src, "parent": tmp_path}[where]
    assert run(ckpt, src, dst) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "inside the input folder" in err
    assert tree(src) == before


def test_usage_errors_are_one_line_with_exit_code_2(ckpt, gray_ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 1)
    cases = {
        "checkpoint not found": (tmp_path / "missing.ckpt", src),
        "method1 checkpoint has no 'b2a' generator": (gray_ckpt, src),
        "input not found": (ckpt, tmp_path / "nowhere"),
    }
    for expected, (checkpoint, source) in cases.items():
        extra = ["--direction", "b2a"] if checkpoint == gray_ckpt else []
        assert run(checkpoint, source, tmp_path / "out", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err


def test_tiles_with_whole_image_statistics_match_the_untiled_result(ckpt):
    g = generator(ckpt)
    image = smooth_image((128, 96))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    whole = translate_tensor(g, x)
    tiled = translate_tensor(g, x, tile=64)  # 4 x 3 tiles, 16 px overlap
    translator = Translator.from_module(g)
    naive = tiled_forward(translator.forward, x, tile=64, overlap=16, stride=4, stats=None)  # each tile its own stats
    ours_error, naive_error = (tiled - whole).abs().mean().item(), (naive - whole).abs().mean().item()
    assert ours_error < 0.03, ours_error
    assert naive_error > 4 * ours_error, (ours_error, naive_error)
    # A wider overlap leaves less of each tile's border, where it saw padding instead of its neighbours.
    close = translator.translate(x, tile=64, overlap=32)
    assert (close - whole).abs().mean().item() < 0.015
    assert (close - whole).abs().max().item() < 0.3

    # Tiling starts by itself above max_pixels, and on out-of-memory errors.
    auto = translate_tensor(g, x, max_pixels=64 * 64)
    torch.testing.assert_close(auto, tiled)


def test_out_of_memory_falls_back_to_tiles(ckpt, monkeypatch):
    g = generator(ckpt)
    x = torch.from_numpy(np.array(smooth_image((128, 96)))).permute(2, 0, 1)[None].float() / 127.5 - 1
    whole = translate_tensor(g, x)
    forward = type(g).forward

    def small_only(self, inp):
        if inp.shape[-2] * inp.shape[-1] > 64 * 96:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
        return forward(self, inp)

    monkeypatch.setattr(type(g), "forward", small_only)
    y = translate_tensor(g, torch.cat([x, x]))  # batch of 2 fails, then one at a time fails, then tiles
    assert y.shape == (2, 3, 96, 128)
    # Statistics now come from a half-size pass (the full size did not fit): close, not exact.
    assert (y - whole).abs().mean().item() < 0.15


def test_tiling_through_the_cli(ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    smooth_image((100, 70)).save(src / "a.png")
    assert run(ckpt, src, tmp_path / "tiled", "--tile", "48") == 0
    assert run(ckpt, src, tmp_path / "whole") == 0
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "a.png"), dtype=float)
    whole = np.asarray(Image.open(tmp_path / "whole" / "a.png"), dtype=float)
    assert tiled.shape == whole.shape == (70, 100, 3)
    assert np.abs(tiled - whole).mean() < 6  # of 255


def test_debug_flag_reraises_with_traceback_instead_of_one_line(tmp_path, capsys):
    from cyclegan.errors import CheckpointError

    argv = ["translate", "--checkpoint", str(tmp_path / "none.ckpt"), "--input", str(tmp_path), "--output",
            str(tmp_path / "out")]
    assert cli_run(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint not found: {tmp_path / 'none.ckpt'}"
    with pytest.raises(CheckpointError):
        cli_main(["--debug", *argv])


def test_a_resized_conversion_names_its_resize_rule_so_outputs_of_another_rule_are_not_reused():
    # Earlier versions resized with PIL bicubic; a manifest row of theirs must not pass for this rule's.
    from cyclegan.inference.manifest import settings_fingerprint

    same = dict(direction="a2b", precision="32", fmt="png", tile=None, overlap=32, max_pixels=None, stats_size=256)
    assert "resize=256:area-cubic " in settings_fingerprint(resize=256, **same)
    assert "resize=none " in settings_fingerprint(resize=None, **same)  # full-size outputs: the same as before
