"""``cyclegan push``: export one generator as a Hugging Face model folder and upload it to the Hub.

    cyclegan push --checkpoint last.ckpt --repo ORG/horse2zebra              # then: --checkpoint hf:ORG/horse2zebra
    cyclegan push --checkpoint last.ckpt --repo ORG/horse2zebra --dry-run    # write the folder, list what would go

The folder is the one ``cyclegan export --format hf`` writes (:mod:`cyclegan.inference.hub`), its
card naming ``hf:ORG/NAME``; the upload is huggingface_hub's ``upload_folder`` with its token
(``HF_TOKEN``, else ``hf auth login``'s). Also the card options ``export --format hf`` shares.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cyclegan.cli.parsing import ToolArgumentParser
from cyclegan.inference.export import CardOptions, ExportResult, export_checkpoint
from cyclegan.inference.hub import FILES
from cyclegan.inference.model_card import DEFAULT_LICENSE
from cyclegan.inference.remote import PushError, hub_token, parse_hub_name, upload_folder

_CHECKPOINT_HELP = ("training checkpoint (.ckpt), a model folder, hf:ORG/NAME[@REVISION], "
                    "wandb:ENTITY/PROJECT/NAME:ALIAS, pretrained:NAME or an authors' .pth")


def card_arguments(p: argparse.ArgumentParser) -> None:
    """The model card's options (``export --format hf`` and ``push``)."""
    p.add_argument("--license", default=None, metavar="ID",
                   help=f"the card's licence, a Hub licence id (default {DEFAULT_LICENSE}, the toolkit's; the "
                   "training images' terms may also bind the weights)")


def card_options(args: argparse.Namespace, repo_id: str | None = None) -> CardOptions:
    return CardOptions(repo_id=repo_id or getattr(args, "repo", None), license=args.license)


def _parser() -> argparse.ArgumentParser:
    p = ToolArgumentParser(
        prog="cyclegan push",
        description="Export one generator as a Hugging Face model folder (model.safetensors, config.json, model "
        "card) and upload it to a Hub repository, created when missing. The token is HF_TOKEN or the one "
        "`hf auth login` saved.",
    )
    p.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP)
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the Hub repository (a model repository)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=None, help="which generator (default a2b)")
    p.add_argument("--revision", default=None, metavar="BRANCH", help="branch to commit to (default main)")
    p.add_argument("--private", action="store_true", help="create the repository private (an existing one is kept)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--output", type=Path, default=None,
                   help="keep the folder here (default: a temporary folder; with --dry-run runs/push/ORG--NAME)")
    p.add_argument("--dry-run", action="store_true", help="write the folder and list what would be uploaded; "
                   "upload nothing")
    card_arguments(p)
    return p


def _describe(r: ExportResult) -> str:
    m = r.metadata
    return (f"{r.output} ({m['kind']}, {m['direction']}, {m['input_nc']}->{m['output_nc']} channels; parity with the "
            f"checkpoint {r.difference:.1e})")


def _export(args: argparse.Namespace, repo_id: str, output: Path) -> ExportResult:
    r = export_checkpoint(args.checkpoint, output, fmt="hf", direction=args.direction,
                          card=card_options(args, repo_id))
    if not r.written:
        raise PushError(f"the exported folder differs from the checkpoint by {r.difference:.2e}; nothing uploaded")
    return r


def push(argv: list[str]) -> int:
    """``cyclegan push``: exit 0 once uploaded (or, with --dry-run, written)."""
    args = _parser().parse_args(argv)
    repo_id, revision = parse_hub_name(args.repo, label="--repo ")
    revision = args.revision or revision
    where = f"https://huggingface.co/{repo_id}" + (f" (branch {revision})" if revision else "")
    if args.dry_run:
        r = _export(args, repo_id, args.output or Path("runs") / "push" / repo_id.replace("/", "--"))
        print(f"wrote {_describe(r)}")
        print(f"dry run: would upload to {where}:")
        for name in FILES:
            print(f"  {name}  {(r.output / name).stat().st_size:,} bytes")
        if hub_token() is None:
            print("note: no Hugging Face token: log in with `hf auth login` or set HF_TOKEN before pushing",
                  file=sys.stderr)
        return 0
    if hub_token() is None:  # before any work
        raise PushError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN")
    with tempfile.TemporaryDirectory(prefix="cyclegan-push-") as tmp:
        r = _export(args, repo_id, args.output or Path(tmp) / "model")
        print(f"wrote {_describe(r)}")
        url = upload_folder(r.output, repo_id, private=args.private or None, revision=revision, message=args.message)
    print(f"uploaded {', '.join(FILES)} to {where}: {url}")
    print(f"use it with: cyclegan translate --checkpoint hf:{repo_id} --input DIR --output DIR")
    return 0
