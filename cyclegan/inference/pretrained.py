"""The pretrained models the CycleGAN and CUT authors published, by name (:data:`PRETRAINED_MODELS`),
fetched once into a local cache. How their files are laid out and read is
:mod:`cyclegan.inference.authors`; this module only knows which models exist and where they are.

* CycleGAN (Zhu et al. 2017): each is ``NAME.pth`` under :data:`DEFAULT_BASE_URL`, one ResNet-9
  generator in the authors' layout, cached as ``NAME.pth``; ``$CYCLEGAN_PRETRAINED_URL`` points
  at a mirror.
* CUT and FastCUT (Park et al. 2020, :data:`CUT_MODELS`): all six are in one tar,
  ``pretrained_models.tar`` under :data:`CUT_BASE_URL` (``$CYCLEGAN_CUT_PRETRAINED_URL`` for a
  mirror), as ``.../RUN/latest_net_G.pth``: an antialiased ResNet-9 generator each. Fetching any
  of them downloads the tar once (resumable, into ``cut/``), takes out exactly those six members
  (:mod:`cyclegan.inference.unpack`) as ``cut/NAME.pth``, each checked to load, and then deletes
  the tar; it stays only while the unpacking is unfinished. A tar that lacks a member, or whose
  member is no generator, is deleted with a one-line error.

The cache is ``~/.cache/cyclegan`` (or ``$CYCLEGAN_CACHE``). Wherever a checkpoint is accepted,
``pretrained:NAME`` names the cached file (downloaded when missing). The HTTP client
(:mod:`cyclegan.inference.download`) is imported only when a download happens: reading a
checkpoint never needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from cyclegan.errors import CheckpointError
from cyclegan.inference.authors import load_authors_generator

if TYPE_CHECKING:
    from cyclegan.inference.download import Notify

DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
URL_ENV_VAR = "CYCLEGAN_PRETRAINED_URL"
CACHE_ENV_VAR = "CYCLEGAN_CACHE"
SCHEME = "pretrained:"
CUT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/CUT"
CUT_URL_ENV_VAR = "CYCLEGAN_CUT_PRETRAINED_URL"
CUT_ARCHIVE = "pretrained_models.tar"
CUT_FOLDER = "cut"  # under the cache: the six generators, and the tar while they are being unpacked
CUT_FILE = "latest_net_G.pth"  # in the tar, as .../RUN/latest_net_G.pth

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

# The CUT authors' (taesungp/contrastive-unpaired-translation, their README's pretrained_models.tar):
# name -> (their run name, what it does). The cityscapes runs were trained with --direction BtoA.
CUT_MODELS: dict[str, tuple[str, str]] = {
    "horse2zebra_cut": ("horse2zebra_cut_pretrained", "horses -> zebras (ImageNet photos)"),
    "horse2zebra_fastcut": ("horse2zebra_fastcut_pretrained", "horses -> zebras (ImageNet photos)"),
    "cat2dog_cut": ("cat2dog_cut_pretrained", "cats -> dogs (AFHQ photos)"),
    "cat2dog_fastcut": ("cat2dog_fastcut_pretrained", "cats -> dogs (AFHQ photos)"),
    "cityscapes_label2photo_cut": ("cityscapes_cut_pretrained", "Cityscapes label colours -> street photos"),
    "cityscapes_label2photo_fastcut": ("cityscapes_fastcut_pretrained", "Cityscapes label colours -> street photos"),
}
PRETRAINED_MODELS.update({name: what for name, (_, what) in CUT_MODELS.items()})


def cache_dir() -> Path:
    """Where published models are kept: ``$CYCLEGAN_CACHE``, else ``~/.cache/cyclegan``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "cyclegan").expanduser()


def method(name: str) -> str:
    """Whose method a published model was trained with: "CycleGAN", "CUT" or "FastCUT"."""
    if _known(name) in CUT_MODELS:
        return "FastCUT" if "_fastcut_" in CUT_MODELS[name][0] else "CUT"
    return "CycleGAN"


def cut_archive_url(base: Optional[str] = None) -> str:
    """The CUT authors' tar: under ``base``, else ``$CYCLEGAN_CUT_PRETRAINED_URL``, else :data:`CUT_BASE_URL`."""
    root = (base or os.environ.get(CUT_URL_ENV_VAR) or CUT_BASE_URL).rstrip("/")
    return f"{root}/{CUT_ARCHIVE}"


def model_url(name: str, base: Optional[str] = None) -> str:
    """Where a published model is downloaded from (for a CUT model: the tar that holds all six)."""
    if name in CUT_MODELS:
        return cut_archive_url(base)
    root = (base or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL).rstrip("/")
    return f"{root}/{name}.pth"


def cached_path(name: str) -> Path:
    if _known(name) in CUT_MODELS:
        return cache_dir() / CUT_FOLDER / f"{name}.pth"
    return cache_dir() / f"{name}.pth"


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
    the file by hand. ``timeout``: seconds (None: ``download.TIMEOUT_S``). A CUT model comes
    with its five siblings: the first of them fetched downloads and unpacks the authors' tar
    (``base``, if given, is where that tar is).
    """
    path = cached_path(name)
    if name in CUT_MODELS:
        return _fetch_cut(path, base=base, timeout=timeout, progress=progress, notify=notify)
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


def _fetch_cut(
    path: Path, *, base: Optional[str], timeout: Optional[float], progress: bool, notify: Optional[Notify],
) -> Path:
    """``path`` (one of the six CUT generators), after downloading and unpacking the tar when it is missing."""
    archive = path.parent / CUT_ARCHIVE
    paths = [cached_path(name) for name in CUT_MODELS]
    if path.is_file():
        if archive.is_file() and all(p.is_file() for p in paths):  # stopped between the last file and the delete
            archive.unlink()
        return path
    from cyclegan.inference import unpack

    members = {name: f"{run}/{CUT_FILE}" for name, (run, _) in CUT_MODELS.items()}
    if not archive.is_file():
        _download_cut(archive, members, base=base, timeout=timeout, progress=progress, notify=notify)
    wanted = {name: (members[name], cached_path(name)) for name in CUT_MODELS if not cached_path(name).is_file()}
    (notify or _quiet)(f"unpacking {len(wanted)} generators from {archive} into {path.parent}")
    try:
        unpack.extract_members(archive, wanted, verify=_verify_member(archive))
    except unpack.BadArchive as e:
        archive.unlink(missing_ok=True)
        raise unpack.BadArchive(f"{e}; the archive was deleted") from None
    archive.unlink()  # every generator is out
    return path


def _download_cut(
    archive: Path, members: dict[str, str], *, base: Optional[str], timeout: Optional[float], progress: bool,
    notify: Optional[Notify],
) -> None:
    from cyclegan.inference import unpack
    from cyclegan.inference.download import TIMEOUT_S, download  # the HTTP client: only for a download

    url = cut_archive_url(base)

    def verify(part: Path) -> None:  # a tar that holds all six, or the download is deleted
        try:
            unpack.check_archive(part, members, source=url)
        except unpack.BadArchive as e:
            raise unpack.BadArchive(f"{e}; the download was deleted") from None

    download(
        url, archive, timeout=TIMEOUT_S if timeout is None else timeout, progress=progress, notify=notify,
        verify=verify, by_hand=f"download {url} by hand and save it as {archive}",
    )


def _verify_member(archive: Path) -> Callable[[Path, str], None]:
    def verify(part: Path, member: str) -> None:
        from cyclegan.inference.unpack import BadArchive

        try:
            load_authors_generator(part)
        except CheckpointError as e:
            raise BadArchive(f"member '{member}' of {archive} is not a usable generator ({e})") from None

    return verify


def _quiet(message: str) -> None:
    pass


def resolve(checkpoint: Union[str, os.PathLike], **fetch_options) -> Path:
    """``pretrained:NAME`` -> the cached file (fetched when missing); any other path as given."""
    text = os.fspath(checkpoint)
    if text.startswith(SCHEME):
        return fetch(text[len(SCHEME):], **fetch_options)
    return Path(text)
