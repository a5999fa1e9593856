"""Last step of ``make demo``: a strip of test images through each model, and one JSON line of scores.

    python bench/demo.py --input datasets/emoji2lineart/testA --target datasets/emoji2lineart/testB \\
        --checkpoint CycleGAN=runs/demo/checkpoints/cyclegan/last.ckpt \\
        --checkpoint "method 1=runs/demo/checkpoints/method1/last.ckpt" \\
        --metrics runs/demo/compare/metrics.json --strip runs/demo/strip.png

The strip has one column per test input (the first ``--count``, sorted by name) and one row
each for the input, each model's translation (``cyclegan.translate_image``, as ``cyclegan
translate`` would write it) and the true B version from ``--target`` when there is one; each
row is labelled at its left. The JSON line takes from the ``metrics.json`` that ``cyclegan
compare --out`` wrote: per model and for the unchanged input KID (mean and std over subsets),
layout_corr and cycle RMSE (null where there is no way back), and the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cyclegan  # noqa: E402
from cyclegan.data.grids import titled_grid  # noqa: E402
from cyclegan.data.images import list_images  # noqa: E402

INPUT_ROW = "ref: input unchanged"  # the row name `cyclegan compare` gives the unchanged input


def _tensor(image: Image.Image, size: int) -> torch.Tensor:
    """uint8 (3, size, size)."""
    picture = image.convert("RGB").resize((size, size), Image.LANCZOS)
    return torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def strip(inputs: Path, checkpoints: dict[str, str], dest: Path, *, target: Path | None, count: int, size: int,
          scale: int) -> int:
    """Write the labelled strip; returns how many columns (test images) it has."""
    files = list_images(inputs)[:count]
    if not files:
        raise SystemExit(f"error: no images in {inputs}")
    rows = {"input": [Image.open(p) for p in files]}
    for name, checkpoint in checkpoints.items():
        generator = cyclegan.load_generator(checkpoint)
        rows[name] = [cyclegan.translate_image(generator, image) for image in rows["input"]]
    if target is not None:
        truth = [next(iter(sorted(target.glob(f.relative_to(inputs).with_suffix(".*").as_posix()))), None) for f in files]
        if all(truth):
            rows["true B"] = [Image.open(p) for p in truth]
    cell = size * scale
    columns = [("", torch.stack([_tensor(images[i], size) for images in rows.values()])) for i in range(len(files))]
    if scale > 1:
        columns = [(t, images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)) for t, images in columns]
    sheet = titled_grid(columns, labels=list(rows), max_label_width=2 * cell)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, optimize=True)
    return len(files)


def scores(row: dict) -> dict:
    def get(key: str):
        value = row.get(key)
        return None if value is None else round(float(value), 4)

    return {"kid": get("kid_mean"), "kid_std": get("kid_std"), "layout_corr": get("layout_corr"),
            "cycle_rmse": get("cycle_rmse")}


def _named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT, got {text!r}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="source images (e.g. testA)")
    parser.add_argument("--target", type=Path, help="their true B versions, same names (e.g. testB): a row of its own")
    parser.add_argument("--checkpoint", type=_named, action="append", required=True,
                        help="NAME=CHECKPOINT, one row of the strip each, in order")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json from cyclegan compare --out")
    parser.add_argument("--strip", type=Path, required=True, help="PNG to write")
    parser.add_argument("--count", type=int, default=12, help="columns in the strip (default 12)")
    parser.add_argument("--size", type=int, default=64, help="cell size before --scale (default 64)")
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)

    metrics = json.loads(args.metrics.read_text())
    summary, row_types = metrics["summary"], metrics.get("kinds", {})  # "kinds": model or reference per row
    models = [name for name, row_type in row_types.items() if row_type == "model"]
    if not models or INPUT_ROW not in summary:
        raise SystemExit(f"error: {args.metrics}: expected model rows and {INPUT_ROW!r}, got {sorted(summary)}")
    columns = strip(args.input, dict(args.checkpoint), args.strip, target=args.target, count=args.count,
                    size=args.size, scale=args.scale)
    card = metrics.get("card", {})
    line = {
        "input": str(args.input), "reference": card.get("reference_dir"), "strip": str(args.strip),
        "strip_columns": columns, "size": card.get("translate_size"),
        "kid_features": card.get("feature_extractor"), "kid_subset_size": card.get("kid_subset_size"),
        "models": {name: scores(summary[name]) for name in models}, "input_unchanged": scores(summary[INPUT_ROW]),
        "verdict": metrics.get("verdict"), "report": str(args.metrics.parent / "report.html"),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
