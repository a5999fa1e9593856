#!/usr/bin/env python3
"""Build a bundled emoji pair: ``datasets/emoji2lineart`` (the demo) or ``datasets/emoji2openmoji``.

``emoji2lineart`` (bundled, ``make demo``): A = OpenMoji's colour emoji, B = OpenMoji's
black line art of *other* emoji (the same drawings without fills): colour in, colouring-book
page out, a change one sees at a glance and that a small translator learns in minutes.
``emoji2openmoji`` (not bundled; the pair the fast recipe was first tuned on): A = Google's
Noto Color Emoji (soft gradients, no outlines), B = OpenMoji colour (thick black outlines,
flat colours). The images come from two npm packages, fetched with the npm client::

    mkdir -p /tmp/emoji && cd /tmp/emoji
    npm pack emoji-datasource-google@16.0.0 openmoji@17.0.0
    cd -
    python datasets/build_emoji_pair.py --pair emoji2lineart \\
        --noto /tmp/emoji/emoji-datasource-google-16.0.0.tgz \\
        --openmoji /tmp/emoji/openmoji-17.0.0.tgz

``--noto`` / ``--openmoji`` accept the ``.tgz`` itself or the folder it was
unpacked to (the ``package/`` folder or its parent); nothing is downloaded. Both pairs
read the emoji catalogue (names, categories) of ``emoji-datasource-google``, so that both
draw from the same emoji with the same names.

Noto: ``img/google/64/<codepoint>.png`` of ``emoji-datasource-google``.
OpenMoji: ``color/svg/<CODEPOINT>.svg`` (or ``black/svg/``) of ``openmoji``, rasterised
with CairoSVG at 8x, then framed like Noto (whose artwork fills the 64 px square with a
1 px margin): a square around the artwork's bounding box, its long side scaled to
62 px and centred. All are composited onto white and saved as 64x64 RGB PNGs.

Selection (reproducible with ``--seed``): single emoji (one code point,
optionally followed by U+FE0F; no ZWJ sequences, skin tones or flags) from
the categories in ``CATEGORIES`` that exist in both packages. After a seeded
shuffle the first ``N_TEST`` form the paired test split (``testA``/``testB``,
same file names in both styles), the next ``N_TRAIN`` are ``trainA`` and the
next ``N_TRAIN`` ``trainB``: the training emoji of A and B are different, so
the training data is genuinely unpaired. Requires Pillow, NumPy and CairoSVG
(``pip install pillow numpy cairosvg``; CairoSVG needs the system cairo
library), needed only to rebuild the sample, not to use it.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

CATEGORIES = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Objects", "Travel & Places", "Activities")
SIZE = 64
EXTENT = 62  # long side of the artwork in px, as in the Noto images
RENDER = 8 * 72  # OpenMoji's SVGs are drawn on a 72x72 grid
N_TEST, N_TRAIN = 40, 250
SPLITS = ("trainA", "trainB", "testA", "testB")
HERE = Path(__file__).resolve().parent
PAIRS = ("emoji2lineart", "emoji2openmoji")


class Package:
    """Read files of an npm package from its .tgz or from an unpacked folder."""

    def __init__(self, location: Path, wanted: str) -> None:
        self.location = location
        self._files: Optional[dict[str, bytes]] = None
        if location.is_file():
            self._files = self._load_tarball(location, re.compile(rf"package/(package\.json|{wanted})"))
        elif (location / "package.json").is_file():
            self._root = location
        elif (location / "package" / "package.json").is_file():
            self._root = location / "package"
        else:
            raise SystemExit(f"{location}: not an npm package tarball or folder")

    @staticmethod
    def _load_tarball(path: Path, wanted: re.Pattern) -> dict[str, bytes]:
        """One sequential pass (random access into a .tgz is slow): keep what we use."""
        files = {}
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                match = wanted.fullmatch(member.name)
                if match and member.isfile():
                    files[match.group(1)] = archive.extractfile(member).read()
        return files

    def read(self, relpath: str) -> Optional[bytes]:
        if self._files is not None:
            return self._files.get(relpath)
        path = self._root / relpath
        return path.read_bytes() if path.is_file() else None

    def json(self, relpath: str):
        data = self.read(relpath)
        if data is None:
            raise SystemExit(f"{self.location}: missing {relpath}")
        return json.loads(data)


def codepoint(entry: dict) -> Optional[str]:
    """The one code point of a single emoji (U+FE0F dropped, as OpenMoji names it), else None."""
    cps = [cp.upper() for cp in entry["unified"].split("-") if cp.upper() != "FE0F"]
    return cps[0] if len(cps) == 1 else None


def file_stem(entry: dict) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", entry["short_name"].lower()).strip("_")
    return f"{entry['unified'].lower()}_{name}"


def on_white(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def noto_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.LANCZOS)
    return on_white(image)


def openmoji_image(svg: bytes) -> Image.Image:
    import cairosvg  # only this script needs it

    png = cairosvg.svg2png(bytestring=svg, output_width=RENDER, output_height=RENDER)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    alpha = np.asarray(image)[..., 3]
    ys, xs = np.nonzero(alpha > 8)
    if len(ys) == 0:
        raise ValueError("empty SVG")
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * SIZE / EXTENT
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    framed = image.crop(box)  # pads with transparent pixels where the box leaves the canvas
    return on_white(framed.resize((SIZE, SIZE), Image.LANCZOS))


def candidates(noto: Package, openmoji: Package) -> list[dict]:
    """Single emoji of CATEGORIES drawn by Noto and by OpenMoji (colour and black), sorted by code point."""
    chosen = []
    for entry in noto.json("emoji.json"):
        cp = codepoint(entry)
        if cp is None or entry["category"] not in CATEGORIES or not entry.get("has_img_google"):
            continue
        if noto.read(f"img/google/{SIZE}/{entry['image']}") is None or any(
                openmoji.read(f"{style}/svg/{cp}.svg") is None for style in ("color", "black")):
            continue
        chosen.append(entry)
    chosen.sort(key=lambda e: e["unified"])
    return chosen


NOTO_LICENSE = """* **Noto Color Emoji**: Copyright Google Inc., licensed under the Apache
  License, Version 2.0: https://github.com/googlefonts/noto-emoji
  (http://www.apache.org/licenses/LICENSE-2.0). Taken from the npm package
  `emoji-datasource-google` (emoji-data by Cal Henderson, MIT license:
  https://github.com/iamcal/emoji-data), files `img/google/64/<codepoint>.png`.
"""

OPENMOJI_LICENSE = """* **OpenMoji**: All emojis designed by [OpenMoji](https://openmoji.org/) – the
  open-source emoji and icon project. License:
  [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/).
  Taken from the npm package `openmoji`, files {files}.
  The images in {folders} are adaptations of OpenMoji and are
  therefore also licensed under CC BY-SA 4.0 (ShareAlike); images translated
  into the OpenMoji style by a model trained on them are best treated the same way.
"""


def write_license(out: Path, pair: str, noto_version: str, openmoji_version: str, seed: int,
                  categories: Sequence[str]) -> None:
    framing = (f"rasterised with CairoSVG at {RENDER}x{RENDER},\nframed by a square around the artwork's "
               f"bounding box (its long side {EXTENT} of 64 px, centred, as\nNoto draws), downscaled to 64x64 with "
               "Lanczos, composited onto white and saved as RGB PNGs.")
    if pair == "emoji2lineart":
        intro = ("A = OpenMoji colour emoji (flat colours, thick black outlines), B = OpenMoji black\n"
                 "line art of other emoji (the same drawing style without fills).")
        table = (f"| `trainA`, `testA` | OpenMoji colour | `openmoji` {openmoji_version} | CC BY-SA 4.0 |\n"
                 f"| `trainB`, `testB` | OpenMoji black (line art) | `openmoji` {openmoji_version} | CC BY-SA 4.0 |")
        credits = OPENMOJI_LICENSE.format(files="`color/svg/<CODEPOINT>.svg` (A) and\n  `black/svg/<CODEPOINT>.svg` (B)",
                                          folders="all four folders")
        modifications = f"the OpenMoji SVGs (both styles) were {framing}"
        catalogue = (f"\nThe emoji, their names and categories come from the catalogue of the npm package\n"
                     f"`emoji-datasource-google` {noto_version} (MIT); no Noto image is included.")
    else:
        intro = "A = Noto Color Emoji (soft gradients, no outlines), B = OpenMoji (thick black\noutlines, flat colours)."
        table = (f"| `trainA`, `testA` | Noto Color Emoji (Google) | `emoji-datasource-google` {noto_version} | Apache License 2.0 |\n"
                 f"| `trainB`, `testB` | OpenMoji | `openmoji` {openmoji_version} | CC BY-SA 4.0 |")
        credits = NOTO_LICENSE + OPENMOJI_LICENSE.format(files="`color/svg/<CODEPOINT>.svg`",
                                                         folders="`trainB` and `testB`")
        modifications = ("the Noto PNGs (64x64 RGBA) were composited onto a white background and saved as\n"
                         f"RGB PNGs. The OpenMoji SVGs were {framing}")
        catalogue = ""
    (out / "LICENSE.md").write_text(
        f"""# {pair}: origin and licenses

Unpaired image-to-image translation pair built by `datasets/build_emoji_pair.py`:
{intro}

| folder | style | source npm package | license of the graphics |
| --- | --- | --- | --- |
{table}

{credits}
Modifications: {modifications}
File names are `<codepoint>_<short name>.png` (emoji-data's names).{catalogue}

Selection, made by `datasets/build_emoji_pair.py --pair {pair} --seed {seed}`: single
emoji (no ZWJ sequences, skin tones or flags) of the categories
{", ".join(categories)} present in both packages;
{N_TRAIN} emoji in `trainA`, {N_TRAIN} different emoji in `trainB` (unpaired), and
the same {N_TEST} further emoji in both `testA` and `testB` (paired test split,
same file names).
"""
    )


def build(noto: Package, openmoji: Package, out: Path, pair: str, seed: int) -> dict[str, int]:
    pool = candidates(noto, openmoji)
    needed = N_TEST + 2 * N_TRAIN
    if len(pool) < needed:
        raise SystemExit(f"only {len(pool)} usable emoji, need {needed}")
    random.Random(seed).shuffle(pool)
    picked = pool[:needed]
    test, train_a, train_b = picked[:N_TEST], picked[N_TEST:N_TEST + N_TRAIN], picked[N_TEST + N_TRAIN:]

    def noto_style(entry: dict) -> Image.Image:
        return noto_image(noto.read(f"img/google/{SIZE}/{entry['image']}"))

    def openmoji_style(folder: str):
        return lambda entry: openmoji_image(openmoji.read(f"{folder}/svg/{codepoint(entry)}.svg"))

    a, b = ((openmoji_style("color"), openmoji_style("black")) if pair == "emoji2lineart"
            else (noto_style, openmoji_style("color")))
    layout = {"trainA": (train_a, a), "trainB": (train_b, b), "testA": (test, a), "testB": (test, b)}
    for split in SPLITS:
        folder = out / split
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        entries, render = layout[split]
        for entry in entries:
            render(entry).save(folder / f"{file_stem(entry)}.png", optimize=True)
    return {split: len(layout[split][0]) for split in SPLITS}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=PAIRS, default=PAIRS[0], help="which pair (default: %(default)s)")
    parser.add_argument("--noto", type=Path, required=True, help="emoji-datasource-google .tgz or folder")
    parser.add_argument("--openmoji", type=Path, required=True, help="openmoji .tgz or folder")
    parser.add_argument("--out", type=Path, help=f"output folder (default: {HERE}/<pair>)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or HERE / args.pair

    noto = Package(args.noto, rf"emoji\.json|img/google/{SIZE}/[^/]+\.png")
    openmoji = Package(args.openmoji, r"(color|black)/svg/[0-9A-F]+\.svg")
    counts = build(noto, openmoji, out, args.pair, args.seed)
    write_license(out, args.pair, noto.json("package.json")["version"], openmoji.json("package.json")["version"],
                  args.seed, CATEGORIES)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(", ".join(f"{k}={v}" for k, v in counts.items()), f"; {total / 1024:.0f} KiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
