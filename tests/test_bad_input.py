"""Training on folders with broken and awkward files: report, skip, never crash."""

import logging
from pathlib import Path

import pytest
import torch

from corpus import make_corpus
from cyclegan.data import DataError, UnpairedDataset, UnpairedImageDataModule, build_transform, usable_images


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
    from cyclegan.data import read_image

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
