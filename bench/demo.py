"""Last step of ``make demo``: a before/after strip and one JSON line of scores.

    python bench/demo.py --input datasets/emoji2lineart/testA --output runs/demo/translated \\
        --reference datasets/emoji2lineart/trainB --metrics runs/demo/evaluate/metrics.json \\
        --strip runs/demo/strip.png

The strip is the first ``--count`` inputs (sorted by name) in the top row and their
translations (same relative names under ``--output``) in the row below, on white, each
``--scale`` times enlarged with nearest-neighbour. The JSON line takes from the
``metrics.json`` that ``cyclegan evaluate --out`` wrote: KID (mean and std over subsets),
layout_corr and cycle RMSE of the model's row and of the unchanged input's row
(``cycle_rmse`` is null there: it has no round trip).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan.data.images import list_images  # noqa: E402

INPUT_ROW = "ref: input unchanged"  # the row name `cyclegan evaluate` gives the unchanged input


def strip(inputs: Path, outputs: Path, dest: Path, *, count: int, size: int, scale: int, gap: int = 4) -> int:
    """Write the two-row PNG; returns how many columns it has."""
    pairs = []
    for path in list_images(inputs):
        rel = path.relative_to(inputs)
        found = [p for p in (outputs / rel, *sorted(outputs.glob(str(rel.with_suffix(".*"))))) if p.is_file()]
        if found:
            pairs.append((path, found[0]))
        if len(pairs) == count:
            break
    if not pairs:
        raise SystemExit(f"no translation in {outputs} matches an input in {inputs}")
    cell = size * scale
    sheet = Image.new("RGB", (len(pairs) * (cell + gap) - gap, 2 * cell + gap), "white")
    for i, (a, b) in enumerate(pairs):
        for row, path in enumerate((a, b)):
            image = Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS)
            sheet.paste(image.resize((cell, cell), Image.NEAREST), (i * (cell + gap), row * (cell + gap)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, optimize=True)
    return len(pairs)


def scores(row: dict) -> dict:
    def get(key: str):
        value = row.get(key)
        return None if value is None else round(float(value), 4)

    return {"kid": get("kid_mean"), "kid_std": get("kid_std"), "layout_corr": get("layout_corr"),
            "cycle_rmse": get("cycle_rmse")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="source images (e.g. testA)")
    parser.add_argument("--output", type=Path, required=True, help="their translations (cyclegan translate --output)")
    parser.add_argument("--reference", type=Path, required=True, help="the KID reference folder given to evaluate")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json from cyclegan evaluate --out")
    parser.add_argument("--strip", type=Path, required=True, help="PNG to write")
    parser.add_argument("--count", type=int, default=12, help="columns in the strip (default 12)")
    parser.add_argument("--size", type=int, default=64, help="cell size before --scale (default 64)")
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)

    columns = strip(args.input, args.output, args.strip, count=args.count, size=args.size, scale=args.scale)
    metrics = json.loads(args.metrics.read_text())
    summary, row_types = metrics["summary"], metrics.get("kinds", {})  # "kinds": model or reference per row
    models = [name for name, row_type in row_types.items() if row_type == "model"] or [n for n in summary if not n.startswith("ref:")]
    if len(models) != 1 or INPUT_ROW not in summary:
        raise SystemExit(f"{args.metrics}: expected one model row and {INPUT_ROW!r}, got {sorted(summary)}")
    card = metrics.get("card", {})
    line = {
        "input": str(args.input), "output": str(args.output), "reference": str(args.reference),
        "strip": str(args.strip), "strip_columns": columns,
        "kid_features": card.get("feature_extractor"), "kid_subset_size": card.get("kid_subset_size"),
        "translated": scores(summary[models[0]]), "input_unchanged": scores(summary[INPUT_ROW]),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
