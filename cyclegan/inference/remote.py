"""Models named rather than given as a path, resolved to a local file or folder: the one place a
``--checkpoint`` (or ``load_generator``/``load_translator`` argument) is resolved.

    pretrained:NAME                       the authors' published generator (:mod:`cyclegan.inference.pretrained`)
    hf:ORG/NAME[@REVISION]                a model folder on the Hugging Face Hub (:mod:`cyclegan.inference.hub`)
    wandb:ENTITY/PROJECT/NAME:ALIAS       a W&B model artifact holding such a folder (``fit --model_artifact.enabled``)

``hf:`` downloads through huggingface_hub's cache and follows its settings (``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``, ``HF_TOKEN``); only config.json, model.safetensors and
README.md are fetched. ``wandb:`` downloads into ``$CYCLEGAN_CACHE/wandb/`` and uses that copy
when W&B cannot be reached. What cannot be had is one :class:`CheckpointError` naming it. Also
here: uploading a model folder to the Hub (``cyclegan push``). huggingface_hub and wandb are
imported only when used.
"""

from __future__ import annotations

import os
from pathlib import Path

from cyclegan.errors import CheckpointError, CycleGANError, first_line
from cyclegan.inference import pretrained
from cyclegan.inference.hub import CONFIG_NAME, FILES, WEIGHTS_NAME

HF_SCHEME = "hf:"
WANDB_SCHEME = "wandb:"


def resolve(checkpoint: str | os.PathLike) -> Path:
    """The local file or folder behind a ``--checkpoint``: ``pretrained:``, ``hf:`` and ``wandb:``
    names are fetched (or found in their caches); any other path as given."""
    text = os.fspath(checkpoint)
    if text.startswith(pretrained.SCHEME):
        return pretrained.resolve(text)
    if text.startswith(HF_SCHEME):
        return fetch_hub(text[len(HF_SCHEME):])
    if text.startswith(WANDB_SCHEME):
        return fetch_wandb(text[len(WANDB_SCHEME):])
    return Path(text)


# --------------------------------------------------------------------------- Hugging Face Hub


def parse_hub_name(spec: str, *, label: str = "hf:") -> tuple[str, str | None]:
    """``ORG/NAME@REVISION`` -> (repo id, revision or None), checked by huggingface_hub's rules;
    ``label`` starts the error message."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, _, revision = spec.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise CheckpointError(f"{label}{spec}: not a Hub repository name ({first_line(e)}); "
                              "use ORG/NAME[@REVISION]") from None
    return repo_id, revision or None


def fetch_hub(spec: str) -> Path:
    """The local snapshot of Hub model ``ORG/NAME[@REVISION]`` (downloaded into huggingface_hub's cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors

    repo_id, revision = parse_hub_name(spec)
    name = f"hf:{spec}"
    # IncompleteSnapshotError: a cached snapshot short of files (huggingface_hub 1.x and later)
    not_cached = (errors.LocalEntryNotFoundError,
                  getattr(errors, "IncompleteSnapshotError", errors.LocalEntryNotFoundError))
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(FILES),
                                        library_name="cyclegan", library_version=_version()))
    except errors.GatedRepoError:
        raise CheckpointError(f"{name}: the repository is gated; accept its terms on the Hub and log in "
                              "(`hf auth login` or HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(f"{name}: no such repository on the Hugging Face Hub (or it is private: log in with "
                              "`hf auth login` or set HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{name}: repository {repo_id} has no revision {revision!r}") from None
    except not_cached:
        raise CheckpointError(f"{name}: not in the Hugging Face cache ({_hub_cache()}) and the Hub cannot be reached "
                              "(HF_HUB_OFFLINE=1 or no network)") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(f"{name}: cannot download repository {repo_id}: {first_line(e)}") from None
    for needed in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / needed).is_file():
            raise CheckpointError(f"{name}: repository {repo_id} has no {needed}: not a cyclegan model "
                                  "(upload one with `cyclegan push`)")
    return folder


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cyclegan")
    except PackageNotFoundError:
        return "unknown"


class PushError(CycleGANError):
    """A model folder that cannot be uploaded: no token, no permission, no network (exit code 2)."""


def hub_token() -> str | None:
    """The Hugging Face token huggingface_hub would use: ``HF_TOKEN``, else the one ``hf auth login`` saved."""
    from huggingface_hub import get_token

    return get_token()


def upload_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None,
                  revision: str | None = None, message: str | None = None) -> str:
    """Upload a model folder to Hub repository ``repo_id`` (created when missing) in one commit;
    returns the commit's URL. Only :data:`~cyclegan.inference.hub.FILES` are uploaded."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors

    token = hub_token()
    if token is None:
        raise PushError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN")
    repo_id, _ = parse_hub_name(repo_id, label="--repo ")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), allow_patterns=list(FILES),
                                   revision=revision, commit_message=message or "Upload generator with cyclegan push")
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise PushError(f"cannot upload to {repo_id} on the Hugging Face Hub: {first_line(e)}") from None
    return getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}"


# --------------------------------------------------------------------------- W&B model artifacts


def parse_wandb_name(spec: str) -> tuple[str, str, str, str]:
    """``ENTITY/PROJECT/NAME:ALIAS`` -> its four parts (ALIAS defaults to ``latest``)."""
    path, _, alias = spec.partition(":")
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise CheckpointError(f"wandb:{spec}: name a W&B model artifact as wandb:ENTITY/PROJECT/NAME:ALIAS")
    return parts[0], parts[1], parts[2], alias or "latest"


def wandb_cache(entity: str, project: str, name: str, alias: str) -> Path:
    """Where ``wandb:ENTITY/PROJECT/NAME:ALIAS`` is kept once downloaded."""
    return pretrained.cache_dir() / "wandb" / entity / project / f"{name}:{alias}"


def fetch_wandb(spec: str) -> Path:
    """The folder of W&B model artifact ``ENTITY/PROJECT/NAME:ALIAS``: downloaded when W&B can be
    reached (the cached copy is refreshed), else the copy cached by an earlier download."""
    entity, project, name, alias = parse_wandb_name(spec)
    cached = wandb_cache(entity, project, name, alias)
    reason = _download_wandb(f"{entity}/{project}/{name}:{alias}", cached)
    if reason is None or (cached / CONFIG_NAME).is_file():
        return cached
    raise CheckpointError(f"wandb:{spec}: {reason}, and it is not cached in {cached}")


def _download_wandb(artifact_name: str, root: Path) -> str | None:
    """Download ``artifact_name`` into ``root``; None when done, else why not (one phrase)."""
    from cyclegan.training.wandb_runs import offline_by_default

    if offline_by_default():
        return "W&B is offline (WANDB_MODE=offline or no login)"
    try:
        import wandb

        artifact = wandb.Api(timeout=30).artifact(artifact_name)
        if artifact.type != "model":
            return f"the artifact is of type {artifact.type!r}, not a model"
        artifact.download(root=os.fspath(root))
    except Exception as e:  # noqa: BLE001 - wandb raises CommError, ValueError, requests' errors, ...
        return f"W&B could not give the artifact ({first_line(e)})"
    return None
