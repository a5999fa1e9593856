"""Image grids with their titles in the pixels: training's sample grids and compare's grid.png.

One column per (title, images) pair, one row per image, 2 px white gaps (torchvision's
``make_grid``); each column's title is drawn above it in a white band, wrapped to the column's
width, and each row's label (when given) in a strip at the left. The text is part of the PNG,
so a grid reads the same in a file browser, in W&B and in a report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

GAP = 2  # px between images
LINE = 12  # px per line of text
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def text_width(text: str, font=None) -> float:
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font or _font())


def wrap(text: str, width: float, font=None) -> list[str]:
    """``text`` broken into lines of at most ``width`` pixels (at any character: names have no spaces)."""
    font = font or _font()
    lines, line = [], ""
    for ch in text:
        if line and text_width(line + ch, font) > width:
            lines.append(line)
            line = ""
        line += ch
    return lines + [line] if line else lines or [""]


def titled_grid(columns: Sequence[tuple[str, torch.Tensor]], *, labels: Sequence[str] | None = None,
                max_label_width: int | None = None) -> Image.Image:
    """The grid as an RGB image. ``columns``: (title, uint8 (N, C, H, W)) with the same N, H and W
    (C 1 or 3; all titles empty: no title band); ``labels``: one per row (N), drawn at the left in a strip at most ``max_label_width``
    px wide (default 3 image widths)."""
    from torchvision.utils import make_grid  # slow to import: only when a grid is drawn

    font = _font()
    n, cell = columns[0][1].shape[0], columns[0][1].shape[-1]
    titles = [wrap(title, cell - 2, font) for title, _ in columns]
    header = 4 + LINE * max(map(len, titles)) if any(title for title, _ in columns) else 0  # no titles, no band
    strip = 0
    if labels is not None:
        strip = min(max_label_width or 3 * cell, 8 + int(max(text_width(label, font) for label in labels)))
    tiles = torch.stack([images[i].expand(3, -1, -1) for i in range(n) for _, images in columns])  # row by row
    grid = make_grid(tiles, nrow=len(columns), padding=GAP, pad_value=255)
    canvas = Image.new("RGB", (strip + grid.shape[2], header + grid.shape[1]), WHITE)
    canvas.paste(Image.fromarray(grid.permute(1, 2, 0).numpy()), (strip, header))
    draw = ImageDraw.Draw(canvas)
    for j, lines in enumerate(titles):
        left = strip + GAP + j * (cell + GAP)
        for k, line in enumerate(lines):  # each line centred over its column
            x = left + max(0.0, (cell - text_width(line, font)) / 2)
            draw.text((x, 2 + k * LINE), line, fill=BLACK, font=font)
    for i, label in enumerate(labels or []):
        lines = wrap(label, strip - 6, font)[: max(1, cell // LINE)]
        draw.multiline_text((3, header + GAP + i * (cell + GAP) + 2), "\n".join(lines), fill=BLACK, font=font,
                            spacing=LINE - 10)
    return canvas


def as_pixels(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3): what a PNG file and a W&B image are made from."""
    return np.asarray(image.convert("RGB")).copy()
