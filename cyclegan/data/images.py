"""Image files and tensors: listing, decoding (EXIF orientation, alpha, 16-bit), the one resize
rule, the conversions between images, uint8 arrays and network tensors in [-1, 1]; atomic file
publishing.

This is the one place where training, conversion and evaluation decode images.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cyclegan.errors import DataError, first_line

# GIF: its first frame, like any other image (training and conversion alike; see frame_count).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` (recursively) with an image extension, sorted.

    Raises :class:`DataError` if the folder is missing or holds none. Broken links are
    kept, so that :func:`usable_images` can report them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())
    if not files:
        exts = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"no images ({exts}) in {folder}")
    return files


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image, from its header alone; ``None`` if it looks fine."""
    try:
        if path.is_symlink() and not path.exists():
            return "broken symbolic link"
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as im:
            width, height = im.size
        if width < 1 or height < 1:
            return "image has no pixels"
    except PermissionError:
        return "permission denied"
    except Image.DecompressionBombError:
        return f"over {Image.MAX_IMAGE_PIXELS * 2} pixels (PIL's decompression-bomb limit)"
    except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
        return describe_error(e)
    return None


def frame_count(image: Image.Image) -> int:
    """How many frames an open image has (animated GIF, WebP, multi-page TIFF); only the first is used."""
    return int(getattr(image, "n_frames", 1))


def describe_error(error: BaseException) -> str:
    """One line saying why a file could not be read, without the path the caller prints."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can decode"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return first_line(error)


def normalize_image(image: Image.Image, *, channels: int = 3) -> tuple[Image.Image, Image.Image | None]:
    """An image as the networks see it: RGB (or L when ``channels`` is 1), upright, 8-bit.

    EXIF orientation is applied; transparent images are composited onto white rather
    than keeping whatever colour hides under alpha 0 (their alpha channel is returned
    too, so that a translation can carry it over); 16-bit images are scaled to 8 bits.
    This is the one place where training and conversion decode images.
    """
    image = ImageOps.exif_transpose(image)
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        alpha = image.getchannel("A")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    elif image.mode.startswith("I"):  # 16/32-bit grayscale; PIL's convert would clip it to white
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray((values * (255.0 / top)).clip(0, 255).astype(np.uint8))
    return image.convert("RGB" if channels == 3 else "L"), alpha


def read_image(path: str | os.PathLike, *, channels: int = 3) -> np.ndarray:
    """Decode an image file as uint8 (H, W, channels), normalised by :func:`normalize_image`."""
    with Image.open(path) as im:
        array = np.asarray(normalize_image(im, channels=channels)[0])
    return array.reshape(array.shape[0], array.shape[1], channels)


# --------------------------------------------------------------------------- resizing
# The one resize rule, for training (datamodule.py, through albumentations), conversion
# (``cyclegan translate --resize``) and evaluation (``--filter antialiased``): shrinking averages
# the pixels each output pixel covers (cv2 INTER_AREA), enlarging is bicubic (cv2 INTER_CUBIC);
# a resize that shrinks either side counts as shrinking (albumentations' rule). cv2's plain
# INTER_CUBIC does not widen its kernel when shrinking, so detail aliases: 8-9 grey levels from
# an exact area average at 256 -> 64 px on maps tiles, INTER_AREA 0.25 (bench/resize.py). The
# authors' pipeline resizes with PIL's (antialiased) bicubic instead; nothing here needs its exact
# pixels (their test.py squashes images to a square, which ``--resize`` does not), so cv2's rule
# holds everywhere. cv2 is imported on first use: converting at full resolution never needs it.


RESIZE_RULE = "area-cubic"  # its name in conversion manifests: outputs resized by another rule are not reused


def resize_interpolation(size: tuple[int, int], new_size: tuple[int, int]) -> int:
    """The cv2 interpolation flag of the resize rule for (W, H) ``size`` -> ``new_size``."""
    import cv2

    (w, h), (new_w, new_h) = size, new_size
    return cv2.INTER_AREA if new_w < w or new_h < h else cv2.INTER_CUBIC


def resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> (h, w[, C]) for ``size`` (w, h), by the resize rule."""
    import cv2

    h, w = array.shape[:2]
    out = cv2.resize(array, size, interpolation=resize_interpolation((w, h), size))
    return out.reshape(size[1], size[0], *array.shape[2:])  # cv2 drops a single channel's axis


def albumentations_resize() -> dict:
    """The resize rule as options of albumentations' ``Resize`` and ``SmallestMaxSize``."""
    import cv2

    return {"interpolation": cv2.INTER_CUBIC, "area_for_downscale": "image"}


def prepare_image(image: Image.Image, *, channels: int, resize: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image as the model's input: uint8 (H, W, channels), and its alpha (H, W) or None.

    Decoded as in training (:func:`normalize_image`); ``resize`` scales the short side to that
    many pixels by the resize rule, alpha alike.
    """
    image, alpha = normalize_image(image, channels=channels)
    array = np.asarray(image).reshape(image.size[1], image.size[0], channels)
    alpha = None if alpha is None else np.asarray(alpha)
    if resize:
        h, w = array.shape[:2]
        scale = resize / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        array = resize_array(array, size)
        alpha = resize_array(alpha, size) if alpha is not None else None
    return array, alpha


def to_tensor(arrays: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Same-size uint8 (H, W, C) arrays -> (N, C, H, W) float in [-1, 1] on ``device`` (moved as uint8: 4x less to copy)."""
    x = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1


def to_numpy_images(y: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] on any device -> uint8 (N, H, W, C) numpy."""
    return to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()


def finish_image(array: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """uint8 (H, W, 1 or 3) -> an L or RGB image, LA or RGBA when the input's alpha is put back."""
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha))
    return image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Network tensors in [-1, 1] -> uint8 [0, 255] in the same layout, rounded as when saved."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Network tensors in [-1, 1] -> [0, 1] for display, clamped."""
    return ((images + 1) / 2).clamp(0, 1)


def float_batch(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) of any dtype as float, same scale; anything else is a bug."""
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    return images.float()


_file_mode: int | None = None
_file_mode_lock = threading.Lock()


def _default_file_mode() -> int:
    """0o666 less the umask, read once on first use: os.umask can only be read by setting it,
    process-wide, so the read is done under a lock and its result kept."""
    global _file_mode
    with _file_mode_lock:
        if _file_mode is None:
            mask = os.umask(0)
            os.umask(mask)
            _file_mode = 0o666 & ~mask
        return _file_mode


def publish(tmp: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename a finished temporary file onto ``dst`` (atomic), with the permissions a plain open() would give.

    ``tempfile.mkstemp`` creates files readable by their owner only.
    """
    os.chmod(tmp, _default_file_mode())
    os.replace(tmp, dst)
