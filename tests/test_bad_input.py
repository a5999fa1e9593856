"""Training on folders with broken and awkward files: report, skip, never crash."""

import logging
import os
from pathlib import Path

import pytest
import torch

from corpus import make_corpus
from cyclegan.data.datamodule import UnpairedDataset, UnpairedImageDataModule, build_transform, usable_images
from cyclegan.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder)


def test_setup_lists_usable_images_and_reports_the_rest_in_one_line(corpus, caplog):
    folder, cases = corpus
    with caplog.at_level(logging.INFO):
        files = usable_images(folder)
    expected_listed = {p for p, e in cases.values() if e == "ok"} | {cases["truncated JPEG"][0]}  # header reads
    assert set(files) == expected_listed
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summary) == 1 and "\n" not in summary[0]
    n_skipped = sum(e == "skip" for _, e in cases.values()) - 1  # the truncated JPEG fails only when decoded
    assert summary[0].startswith(f"warning: skipped {n_skipped} of {len(expected_listed) + n_skipped} files in {folder}")


def test_every_usable_image_decodes_to_the_crop_and_a_bad_one_is_replaced(corpus, caplog):
    folder, cases = corpus
    files = usable_images(folder)
    transform = build_transform(preprocess="crop", load_size=32, crop_size=32, flip=True, train=True)
    ds = UnpairedDataset(files, files, transform, paired_index=True)
    with caplog.at_level(logging.INFO):
        items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item["A"].shape == (3, 32, 32) and torch.isfinite(item["A"]).all()
    truncated = cases["truncated JPEG"][0]
    assert str(truncated) not in {it["A_path"] for it in items}  # replaced by another file
    assert sum(f"cannot decode {truncated}" in r.getMessage() for r in caplog.records) == 1  # reported once


def test_sixteen_bit_and_exif_are_read_right(corpus):
    from cyclegan.data.images import read_image

    _, cases = corpus
    sixteen = read_image(cases["16-bit PNG"][0])
    assert sixteen[0, 0, 0] == 0 and sixteen[-1, -1, 0] == 255  # full range...
    assert 100 < sixteen[24, 20, 0] < 156  # ...scaled, not clipped to white
    assert read_image(cases["EXIF-rotated JPEG"][0]).shape == (40, 48, 3)


def test_folder_of_only_bad_files_and_empty_folder_fail_at_setup_naming_the_folder(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("nope")
    with pytest.raises(DataError, match=rf"no usable images in {bad}: all 2 unreadable"):
        usable_images(bad)
    (tmp_path / "root" / "trainA").mkdir(parents=True)
    (tmp_path / "root" / "trainB").mkdir()
    with pytest.raises(DataError, match=r"no images .* in .*trainA$"):
        UnpairedImageDataModule(str(tmp_path / "root")).setup("fit")


def test_training_runs_over_the_corpus(corpus, tmp_path):
    import pytorch_lightning as pl
    from cyclegan import CycleGAN, DiscriminatorConfig, GeneratorConfig

    folder, _ = corpus
    pl.seed_everything(0)
    model = CycleGAN(generator=GeneratorConfig(ngf=4, n_blocks=1), discriminator=DiscriminatorConfig(ndf=4, n_layers=2))
    dm = UnpairedImageDataModule(train_a=str(folder), train_b=str(folder), preprocess="crop", crop_size=32,
                                 num_workers=0)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert trainer.global_step == len(dm.train_set)  # a full epoch, bad files and all


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)}


def test_conversion_converts_every_readable_file_reports_the_rest_and_modifies_nothing(corpus, tmp_path, capsys):
    import csv

    from test_translate import main
    from test_translate import make_checkpoint

    folder, cases = corpus
    before = _tree_bytes(folder)
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(ckpt), "--input", str(folder), "--output", str(out), "--workers", "0", "--quiet"])
    assert rc == 1  # some files failed
    rows = {Path(r["input"]).resolve(): r for r in csv.DictReader(open(out / "manifest.csv"))}
    for name, (path, expected) in cases.items():
        row = rows.get(path.resolve()) or rows.get(path.absolute())
        if expected == "ignore":
            assert row is None, name
        elif expected == "ok":
            assert row is not None and row["status"] == "converted", (name, row)
            assert Path(row["output"]).is_file()
        else:
            assert row is not None and row["status"] == "failed" and row["reason"], (name, row)
    truncated = rows[cases["truncated JPEG"][0].resolve()]
    assert truncated["status"] == "failed"
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _tree_bytes(folder) == before  # inputs untouched


@pytest.mark.parametrize("case", ["missing", "random .pt", "truncated .ckpt", "direction the model lacks",
                                  "output cannot be written"])
def test_bad_arguments_get_one_line_and_exit_code_2(tmp_path, capsys, case):
    from test_translate import main
    from test_translate import make_checkpoint
    from conftest import write_images

    src = tmp_path / "in"
    write_images(src, 1)
    ckpt = make_checkpoint(tmp_path / "m1.ckpt", kind="method1")
    out, direction = tmp_path / "out", "a2b"
    if case == "missing":
        ckpt = tmp_path / "nope.ckpt"
    elif case == "random .pt":
        ckpt = tmp_path / "random.pt"
        torch.save({"weights": torch.zeros(3)}, ckpt)
    elif case == "truncated .ckpt":
        data = (tmp_path / "m1.ckpt").read_bytes()
        ckpt = tmp_path / "truncated.ckpt"
        ckpt.write_bytes(data[: len(data) // 2])
    elif case == "direction the model lacks":
        direction = "b2a"
    else:
        (tmp_path / "file").write_text("a file, not a folder")
        out = tmp_path / "file" / "out"
    rc = main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--direction", direction,
               "--workers", "0", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert str(ckpt) in err[0] or str(out.parent) in err[0] or case == "direction the model lacks"
