"""Which downscaling filter to train and evaluate with: distances to an exact area average.

    python bench/resize.py [--images ../shared/data/maps/trainA] [--sizes 64 143] [--count 50]

Shrinking an image should average the source pixels each output pixel covers (PIL's BOX
filter computes exactly that area average). cv2's INTER_CUBIC samples a 4x4 neighbourhood
without widening it for the scale factor, so fine detail aliases; the published pipeline
(torchvision on PIL) uses PIL's bicubic, which does widen it. For each filter this prints the
mean and the largest absolute difference, in grey levels of 0-255, to PIL BOX and to PIL
bicubic. Without ``--images`` it makes test images: random photos' worth of detail (smoothed
noise plus sharp edges) at 720x477, the size of a typical web photo. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan.data.images import list_images, read_image  # noqa: E402


def synthetic(count: int, seed: int = 0) -> list[np.ndarray]:
    """720x477 RGB: low-frequency colour plus thin lines and text-like high-frequency detail."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        base = cv2.resize(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8), (720, 477), interpolation=cv2.INTER_CUBIC)
        detail = (rng.random((477, 720, 1)) < 0.05) * rng.integers(-120, 120, (1, 1, 3))
        img = np.clip(base.astype(int) + detail, 0, 255).astype(np.uint8)
        for _ in range(20):
            p, q = rng.integers(0, 720, 2), rng.integers(0, 477, 2)
            cv2.line(img, (int(p[0]), int(q[0])), (int(p[1]), int(q[1])), tuple(int(c) for c in rng.integers(0, 256, 3)), 1)
        out.append(img)
    return out


def filters(size: tuple[int, int]):
    """name -> function uint8 (H, W, 3) -> uint8 (size[1], size[0], 3)."""
    w, h = size
    pil = lambda f: lambda im: np.asarray(Image.fromarray(im).resize(size, f))  # noqa: E731
    return {
        "cv2 INTER_CUBIC (before)": lambda im: cv2.resize(im, size, interpolation=cv2.INTER_CUBIC),
        "cv2 INTER_AREA": lambda im: cv2.resize(im, size, interpolation=cv2.INTER_AREA),
        "albumentations Resize(cubic, area_for_downscale)": lambda im: A.Resize(
            h, w, interpolation=cv2.INTER_CUBIC, area_for_downscale="image")(image=im)["image"],
        "PIL BICUBIC (published pipeline)": pil(Image.BICUBIC),
        "PIL BOX (area average)": pil(Image.BOX),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="a folder of images (default: synthetic 720x477)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 286], help="target short side")
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()
    if args.images:
        images = [read_image(p, channels=3) for p in list_images(args.images)[:args.count]]
        source = str(args.images)
    else:
        images, source = synthetic(args.count), "synthetic 720x477"
    print(f"{len(images)} images from {source}, first {images[0].shape[1]}x{images[0].shape[0]}")
    rows = []
    for short in args.sizes:
        for name in filters((1, 1)):
            diffs = {"box": [], "pil_bicubic": []}
            for im in images:
                h, w = im.shape[:2]
                size = (round(w * short / min(h, w)), round(h * short / min(h, w)))
                fs = filters(size)
                out = fs[name](im).astype(int)
                diffs["box"].append(np.abs(out - fs["PIL BOX (area average)"](im)))
                diffs["pil_bicubic"].append(np.abs(out - fs["PIL BICUBIC (published pipeline)"](im)))
            row = {"short_side": short, "filter": name}
            for ref, d in diffs.items():
                row[f"mad_vs_{ref}"] = float(np.mean([x.mean() for x in d]))
                row[f"max_vs_{ref}"] = int(max(x.max() for x in d))
            rows.append(row)
            print(f"{short:4d} px  {name:50s} vs area average: mean {row['mad_vs_box']:5.2f} max {row['max_vs_box']:3d}"
                  f" | vs PIL bicubic: mean {row['mad_vs_pil_bicubic']:5.2f} max {row['max_vs_pil_bicubic']:3d}")
    print(json.dumps({"source": source, "count": len(images), "rows": rows}))


if __name__ == "__main__":
    main()
