#!/usr/bin/env python3
"""Build the small bundled sample ``datasets/emoji`` (Noto Color Emoji -> Twemoji).

Domain A is Google's Noto Color Emoji style, domain B is Twitter's Twemoji
style. The images come from the npm packages ``emoji-datasource-google`` and
``emoji-datasource-twitter`` (``img/<set>/64/<codepoint>.png``). Fetch them
with the npm client, e.g.::

    mkdir -p /tmp/emoji && cd /tmp/emoji
    npm pack emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0
    cd -
    python datasets/make_emoji_sample.py \\
        --google /tmp/emoji/emoji-datasource-google-16.0.0.tgz \\
        --twitter /tmp/emoji/emoji-datasource-twitter-16.0.0.tgz

``--google`` / ``--twitter`` accept the ``.tgz`` itself or the folder it was
unpacked to (either the ``package/`` folder or its parent).

Selection (reproducible with ``--seed``): ordinary single emoji (one code
point, optionally followed by U+FE0F; no ZWJ sequences, skin tones or flags)
from the categories Smileys & Emotion, Animals & Nature, Food & Drink and
Objects that have an image in both sets. After a seeded shuffle the first 20
form the paired test split (``testA``/``testB``, same file names in both
styles), the next 100 are ``trainA`` and the next 100 ``trainB``, so the
training data is genuinely unpaired. Each RGBA image is composited onto white
and saved as a 64x64 RGB PNG. Requires Pillow.
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

from PIL import Image

CATEGORIES = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Objects")
SIZE = 64
N_TEST, N_TRAIN = 20, 100
SPLITS = ("trainA", "trainB", "testA", "testB")
DEFAULT_OUT = Path(__file__).resolve().parent / "emoji"


class Package:
    """Read files of an npm package from its .tgz or from an unpacked folder."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self._files: Optional[dict[str, bytes]] = None
        if location.is_file():
            self._files = self._load_tarball(location)
        elif (location / "package.json").is_file():
            self._root = location
        elif (location / "package" / "package.json").is_file():
            self._root = location / "package"
        else:
            raise SystemExit(f"{location}: not an npm package tarball or folder")

    @staticmethod
    def _load_tarball(path: Path) -> dict[str, bytes]:
        """One sequential pass (random access into a .tgz is slow): keep what we use."""
        wanted = re.compile(rf"package/(package\.json|emoji\.json|img/[a-z]+/{SIZE}/[^/]+\.png)")
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


def is_single_emoji(entry: dict) -> bool:
    codepoints = [cp for cp in entry["unified"].split("-") if cp.upper() != "FE0F"]
    return len(codepoints) == 1


def file_stem(entry: dict) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", entry["short_name"].lower()).strip("_")
    return f"{entry['unified'].lower()}_{name}"


def candidates(google: Package, twitter: Package) -> list[dict]:
    """Emoji that qualify and have a 64px image in both packages, sorted by code point."""
    chosen = []
    for entry in google.json("emoji.json"):
        if entry["category"] not in CATEGORIES or not is_single_emoji(entry):
            continue
        if not (entry.get("has_img_google") and entry.get("has_img_twitter")):
            continue
        chosen.append(entry)
    chosen.sort(key=lambda e: e["unified"])
    return chosen


def to_rgb_on_white(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.LANCZOS)
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def write_license(out: Path, google_version: str, twitter_version: str, seed: int) -> None:
    (out / "LICENSE.md").write_text(
        f"""# emoji sample: origin and licenses

Small unpaired image-to-image sample bundled with cyclegan for the quick start.

| folder | style | source npm package | license of the graphics |
| --- | --- | --- | --- |
| `trainA`, `testA` | Noto Color Emoji (Google) | `emoji-datasource-google` {google_version} | Apache License 2.0 |
| `trainB`, `testB` | Twemoji (Twitter/X, jdecked fork) | `emoji-datasource-twitter` {twitter_version} | CC-BY 4.0 |

* **Noto Color Emoji** — Copyright Google Inc., licensed under the Apache
  License, Version 2.0: https://github.com/googlefonts/noto-emoji
  (http://www.apache.org/licenses/LICENSE-2.0).
* **Twemoji** — Copyright Twitter, Inc. and other contributors (now maintained
  at https://github.com/jdecked/twemoji), graphics licensed under CC-BY 4.0:
  https://creativecommons.org/licenses/by/4.0/.
* The images were taken from the npm packages `emoji-datasource-google` and
  `emoji-datasource-twitter` (emoji-data by Cal Henderson, MIT license:
  https://github.com/iamcal/emoji-data), files `img/<set>/64/<codepoint>.png`.

Modifications: each 64x64 RGBA image was composited onto a white background
and saved as an RGB PNG. File names are `<codepoint>_<short name>.png`.
The selection was made by `datasets/make_emoji_sample.py --seed {seed}`:
{N_TRAIN} emoji in `trainA`, {N_TRAIN} different emoji in `trainB` (unpaired), and
the same {N_TEST} further emoji in both `testA` and `testB` (paired test split).
"""
    )


def build(google: Package, twitter: Package, out: Path, seed: int) -> dict[str, int]:
    pool = candidates(google, twitter)
    random.Random(seed).shuffle(pool)
    needed = N_TEST + 2 * N_TRAIN
    picked: list[tuple[dict, bytes, bytes]] = []
    for entry in pool:  # walk the shuffled pool, keeping emoji present in both sets
        a = google.read(f"img/google/{SIZE}/{entry['image']}")
        b = twitter.read(f"img/twitter/{SIZE}/{entry['image']}")
        if a is not None and b is not None:
            picked.append((entry, a, b))
        if len(picked) == needed:
            break
    else:
        raise SystemExit(f"only {len(picked)} usable emoji, need {needed}")

    test = picked[:N_TEST]
    train_a = picked[N_TEST : N_TEST + N_TRAIN]
    train_b = picked[N_TEST + N_TRAIN :]
    layout = {
        "testA": [(e, a) for e, a, _ in test],
        "testB": [(e, b) for e, _, b in test],
        "trainA": [(e, a) for e, a, _ in train_a],
        "trainB": [(e, b) for e, _, b in train_b],
    }
    for split in SPLITS:
        folder = out / split
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for entry, png in layout[split]:
            to_rgb_on_white(png).save(folder / f"{file_stem(entry)}.png", optimize=True)
    return {split: len(items) for split, items in layout.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--google", type=Path, required=True, help="emoji-datasource-google .tgz or folder")
    parser.add_argument("--twitter", type=Path, required=True, help="emoji-datasource-twitter .tgz or folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    google, twitter = Package(args.google), Package(args.twitter)
    counts = build(google, twitter, args.out, args.seed)
    write_license(
        args.out,
        google.json("package.json")["version"],
        twitter.json("package.json")["version"],
        args.seed,
    )
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(", ".join(f"{k}={v}" for k, v in counts.items()), f"; {total / 1024:.0f} KiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
