"""A corpus of awkward and broken image files, as found in folders scraped from the web.

``make_corpus(folder)`` writes one file per case and returns {case: (path, expected)},
where expected is "ok" (a usable image), "skip" (reported and left out) or "ignore"
(not an image extension: silently not an input).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    low = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC))


def make_corpus(folder: Path, *, large: bool = True) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, filename: str, expected: str) -> Path:
        path = folder / filename
        cases[name] = (path, expected)
        return path

    rgb = Image.fromarray(_smooth(48, 40))
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=95)
    add("truncated JPEG", "truncated.jpg", "skip").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    add("zero-byte file", "empty.jpg", "skip").write_bytes(b"")
    add("text file named .jpg", "text.jpg", "skip").write_text("this is not an image\n")
    rgb.save(add("PNG with .jpg extension", "png_inside.jpg", "ok"), "PNG")
    rgb.convert("CMYK").save(add("CMYK JPEG", "cmyk.jpg", "ok"), "JPEG")
    sixteen = (np.linspace(0, 65535, 48 * 40).reshape(48, 40)).astype(np.uint16)
    Image.fromarray(sixteen).save(add("16-bit PNG", "sixteen.png", "ok"))  # mode I;16
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(add("palette PNG with transparency", "palette.png", "ok"), transparency=0)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(add("RGBA PNG", "rgba.png", "ok"))
    rgb.convert("L").save(add("grayscale JPEG", "gray.jpg", "ok"))
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    rgb.save(add("EXIF-rotated JPEG", "rotated.jpg", "ok"), exif=exif)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(add("1x1 image", "one_pixel.png", "ok"))
    Image.fromarray(_smooth(12, 20)).save(add("image smaller than the crop", "small.png", "ok"))
    if large:
        Image.fromarray(_smooth(4000, 6000)).save(add("very large image (6000x4000)", "large.jpg", "ok"), quality=80)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(add("animated GIF", "animated.gif", "ok"), save_all=True, append_images=frames[1:])  # first frame
    add("text file", "notes.txt", "ignore").write_text("notes")
    add(".DS_Store", ".DS_Store", "ignore").write_bytes(b"\0\0\0\1Bud1")
    no_access = add("unreadable file (no permission)", "secret.png", "skip" if os.geteuid() != 0 else "ok")
    rgb.save(no_access)
    no_access.chmod(0)  # root reads it anyway: then it is an ordinary image
    link = add("broken symlink", "dangling.png", "skip")
    link.symlink_to(folder / "does-not-exist.png")
    sub = folder / "sub folder" / "ünïcødé"
    sub.mkdir(parents=True)
    rgb.save(add("non-ASCII and space file name", "sub folder/ünïcødé/çafé au lait.png", "ok"))
    return cases
