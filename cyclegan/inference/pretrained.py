"""The pretrained models the CycleGAN authors published, by name (:data:`PRETRAINED_MODELS`),
fetched once into a local cache. How their files are laid out and read is
:mod:`cyclegan.inference.authors`; this module only knows which models exist and where they are.

Each is ``NAME.pth`` under :data:`DEFAULT_BASE_URL`: one ResNet-9 generator in the authors'
layout. They land in ``~/.cache/cyclegan`` (or ``$CYCLEGAN_CACHE``); ``$CYCLEGAN_PRETRAINED_URL``
points at a mirror. Wherever a checkpoint is accepted, ``pretrained:NAME`` names the cached file
(downloaded when missing). The HTTP client (:mod:`cyclegan.inference.download`) is imported
only when a download happens: reading a checkpoint never needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from cyclegan.errors import CheckpointError
from cyclegan.inference.authors import load_authors_generator

if TYPE_CHECKING:
    from cyclegan.inference.download import Notify

DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
URL_ENV_VAR = "CYCLEGAN_PRETRAINED_URL"
CACHE_ENV_VAR = "CYCLEGAN_CACHE"
SCHEME = "pretrained:"

# Name -> what it does, in the authors' list order (their scripts/download_cyclegan_model.sh).
PRETRAINED_MODELS: dict[str, str] = {
    "apple2orange": "apples -> oranges (ImageNet photos)",
    "orange2apple": "oranges -> apples (ImageNet photos)",
    "summer2winter_yosemite": "Yosemite in summer -> in winter (Flickr photos)",
    "winter2summer_yosemite": "Yosemite in winter -> in summer (Flickr photos)",
    "horse2zebra": "horses -> zebras (ImageNet photos)",
    "zebra2horse": "zebras -> horses (ImageNet photos)",
    "monet2photo": "Monet paintings -> photographs",
    "style_monet": "photographs -> paintings in the style of Monet",
    "style_cezanne": "photographs -> paintings in the style of Cezanne",
    "style_ukiyoe": "photographs -> Ukiyo-e prints",
    "style_vangogh": "photographs -> paintings in the style of Van Gogh",
    "sat2map": "aerial photos -> Google Maps renderings",
    "map2sat": "Google Maps renderings -> aerial photos",
    "cityscapes_photo2label": "street photos -> Cityscapes label colours",
    "cityscapes_label2photo": "Cityscapes label colours -> street photos",
    "facades_photo2label": "building facade photos -> CMP Facades label colours",
    "facades_label2photo": "CMP Facades label colours -> building facade photos",
    "iphone2dslr_flower": "iPhone flower photos -> DSLR-like shallow depth of field",
}


def cache_dir() -> Path:
    """Where published models are kept: ``$CYCLEGAN_CACHE``, else ``~/.cache/cyclegan``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "cyclegan").expanduser()


def model_url(name: str, base: Optional[str] = None) -> str:
    root = (base or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL).rstrip("/")
    return f"{root}/{name}.pth"


def cached_path(name: str) -> Path:
    return cache_dir() / f"{_known(name)}.pth"


def _known(name: str) -> str:
    if name not in PRETRAINED_MODELS:
        raise CheckpointError(f"no published model {name!r}; choose one of: {', '.join(PRETRAINED_MODELS)}")
    return name


def fetch(
    name: str, *, base: Optional[str] = None, timeout: Optional[float] = None, progress: bool = True,
    notify: Optional[Notify] = None,
) -> Path:
    """The cached file of published model ``name``, downloaded first when missing.

    The download resumes an interrupted one and appears in the cache only once complete
    and loadable as a generator. Offline: DownloadError naming the URL and where to put
    the file by hand. ``timeout``: seconds (None: ``download.TIMEOUT_S``).
    """
    path = cached_path(name)
    if path.is_file():
        return path
    from cyclegan.inference.download import TIMEOUT_S, download  # the HTTP client: only for a download

    url = model_url(name, base)

    def verify(part: Path) -> None:
        try:
            load_authors_generator(part)
        except CheckpointError as e:
            raise CheckpointError(f"{url} did not give a usable generator ({e}); the download was deleted") from None

    download(
        url, path, timeout=TIMEOUT_S if timeout is None else timeout, progress=progress, notify=notify, verify=verify,
        by_hand=f"download {url} by hand and save it as {path}",
    )
    return path


def resolve(checkpoint: Union[str, os.PathLike], **fetch_options) -> Path:
    """``pretrained:NAME`` -> the cached file (fetched when missing); any other path as given."""
    text = os.fspath(checkpoint)
    if text.startswith(SCHEME):
        return fetch(text[len(SCHEME):], **fetch_options)
    return Path(text)
