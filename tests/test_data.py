from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.data.datamodule import UnpairedDataset, UnpairedImageDataModule, build_transform
from cyclegan.data.images import list_images, read_image
from cyclegan.errors import DataError
from conftest import write_images


def test_listing_is_recursive_sorted_and_filters_by_extension(tmp_path):
    write_images(tmp_path / "a" / "deep" / "er", 2, prefix="x")
    write_images(tmp_path / "a", 1, prefix="y", ext="JPG")
    write_images(tmp_path / "a", 1, prefix="z", ext="webp")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\0")
    files = list_images(tmp_path / "a")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in files] == [
        "deep/er/x000.png", "deep/er/x001.png", "y000.JPG", "z000.webp",
    ]


def test_empty_or_missing_folder_is_a_one_line_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images .* in .*empty$"):
        list_images(tmp_path / "empty")
    with pytest.raises(DataError, match=r"image folder not found: .*missing$"):
        list_images(tmp_path / "missing")
    dm = UnpairedImageDataModule(str(tmp_path), num_workers=0)
    with pytest.raises(DataError, match="trainA") as e:
        dm.setup("fit")
    assert "\n" not in str(e.value)


def test_grayscale_rgba_and_exif_rotation(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((8, 6), 100, np.uint8), "L").save(gray)
    assert read_image(gray, channels=3).shape == (8, 6, 3)
    assert read_image(gray, channels=1).shape == (8, 6, 1)

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red under...
    rgba[:2, :, 3] = 255  # ...opaque top half, transparent bottom half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[3, 3].tolist() == [255, 255, 255]

    # A 20 wide x 10 high photo whose EXIF says "rotate 90 CW to display" (orientation 6).
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[0, 0] = 255  # top-left marker
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "r.jpg")
    assert shown.shape == (20, 10, 3)
    assert shown[0, -1].mean() > 200  # marker now top-right
    assert shown[-1, 0].mean() < 50


def test_unpaired_sampling_walks_a_and_draws_b_at_random(tmp_path):
    a = write_images(tmp_path / "A", 3, seed=1)
    b = write_images(tmp_path / "B", 7, seed=2)
    t = build_transform(preprocess="crop", load_size=32, crop_size=32, flip=False, train=True)
    ds = UnpairedDataset(a, b, t)
    assert len(ds) == 7  # max(|A|, |B|)
    torch.manual_seed(0)
    items = [ds[i] for i in range(7)]
    assert [Path(it["A_path"]).name for it in items] == [p.name for p in a] * 2 + [a[0].name]
    drawn = [Path(ds[i % 7]["B_path"]).name for i in range(70)]
    assert len(set(drawn)) == 7  # every B image shows up...
    assert drawn[:7] != [p.name for p in b]  # ...but not aligned with the index
    assert items[0]["A"].shape == (3, 32, 32) and -1 <= items[0]["A"].min() and items[0]["A"].max() <= 1


def test_datamodule_channels_root_layout_and_fixed_validation(tiny_root, tmp_path):
    dm = UnpairedImageDataModule(str(tiny_root), input_nc=1, output_nc=3, load_size=36, crop_size=32, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["A"].shape == (1, 1, 32, 32) and batch["B"].shape == (1, 3, 32, 32)
    assert len(dm.val_set) == 2 and "testA" in dm.val_set[0]["A_path"]
    torch.testing.assert_close(dm.sample_batch(2)["A"], dm.sample_batch(2)["A"])  # deterministic

    # Without testA/testB, validation falls back to the first training images.
    write_images(tmp_path / "only" / "trainA", 3)
    write_images(tmp_path / "only" / "trainB", 3)
    dm = UnpairedImageDataModule(str(tmp_path / "only"), crop_size=32, load_size=36, num_workers=0)
    dm.setup("fit")
    assert len(dm.val_set) == 3 and "trainA" in dm.val_set[0]["A_path"]


def test_preprocess_modes_produce_crop_size():
    image = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    for mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        for train in (True, False):
            out = build_transform(preprocess=mode, load_size=40, crop_size=32, flip=True, train=train)(image=image)["image"]
            assert out.shape == (3, 32, 32), mode
    out = build_transform(preprocess="none", load_size=40, crop_size=32, flip=False, train=True)(image=image)["image"]
    assert out.shape == (3, 32, 52)  # padded to multiples of 4


def test_shrinking_averages_the_pixels_enlarging_is_bicubic():
    # A one-pixel checkerboard shrunk 64 -> 30 is half black, half white under every output
    # pixel, so an area average is nearly flat grey; plain bicubic (std 63 here) keeps stripes.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    for mode in ("resize_and_crop", "scale_width_and_crop"):
        out = build_transform(preprocess=mode, load_size=30, crop_size=30, flip=False, train=True)(image=board)["image"]
        assert out.std() < 0.01 and abs(out.mean()) < 0.01, mode  # 127.5 -> 0.0 in [-1, 1]
    out = build_transform(preprocess="crop", load_size=30, crop_size=30, flip=False, train=False)(image=board)["image"]
    assert out.std() < 0.01
    small = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    up = build_transform(preprocess="resize_and_crop", load_size=32, crop_size=32, flip=False, train=True)(image=small)["image"]
    expected = cv2.resize(small, (32, 32), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(up.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_preprocess_none_keeps_sizes_and_sample_batch_crops_to_a_common_one(tmp_path):
    write_images(tmp_path / "d" / "trainA", 1, size=(40, 36))
    write_images(tmp_path / "d" / "trainA", 1, size=(48, 44), prefix="big")
    write_images(tmp_path / "d" / "trainB", 2, size=(40, 40))
    dm = UnpairedImageDataModule(str(tmp_path / "d"), preprocess="none", num_workers=0)
    dm.setup("fit")
    assert {tuple(dm.val_set[i]["A"].shape) for i in range(2)} == {(3, 44, 48), (3, 36, 40)}  # (C, H, W)
    assert dm.sample_batch(2)["A"].shape == (2, 3, 36, 40)


def test_loader_workers_follow_the_cpus_this_process_may_use(monkeypatch):
    from cyclegan.data import datamodule

    monkeypatch.setattr(datamodule, "usable_cpus", lambda: 16)
    assert datamodule.loader_workers(None, cuda=True) == 8  # a GPU step is fast: up to 8
    assert datamodule.loader_workers(None, cuda=True, processes=4) == 4  # four GPUs share 16 CPUs
    assert datamodule.loader_workers(None, cuda=False) == 4  # on a CPU the workers take the step's cores
    assert datamodule.loader_workers(12, cuda=True) == 12 and datamodule.loader_workers(0, cuda=True) == 0
    monkeypatch.setattr(datamodule, "usable_cpus", lambda: 2)  # taskset / a container's cpuset
    assert datamodule.loader_workers(None, cuda=False) == 2 and datamodule.loader_workers(8, cuda=True) == 2
    assert datamodule.loader_workers(None, cuda=True, processes=4) == 1
