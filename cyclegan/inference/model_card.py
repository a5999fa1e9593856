"""What a model card says about a generator, gathered from its training checkpoint and run folder.

:func:`training_facts` reads the facts (plain data: what it translates, the training folders and
their sizes, the recipe, iterations, the last validation metrics, the W&B run); :func:`card_fields`
turns them into the fields of huggingface_hub's model card template, which
:class:`cyclegan.inference.hub_model.HubGenerator` fills. No huggingface_hub here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import yaml

from cyclegan.data.images import list_images
from cyclegan.errors import DataError
from cyclegan.training.state import WANDB_RUN_ID

DEFAULT_LICENSE = "bsd-3-clause"  # the toolkit's; the training images' terms may bind the weights too
_DATA = {"a": ("train_a", "trainA", "val_a", "testA"), "b": ("train_b", "trainB", "val_b", "testB")}
_CYCLEGAN = ("cyclegan", "https://arxiv.org/abs/1703.10593", """@inproceedings{zhu2017unpaired,
  title={Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks},
  author={Zhu, Jun-Yan and Park, Taesung and Isola, Phillip and Efros, Alexei A},
  booktitle={IEEE International Conference on Computer Vision (ICCV)},
  year={2017}
}""", "Zhu, J.-Y., Park, T., Isola, P., & Efros, A. A. (2017). Unpaired Image-to-Image Translation using "
    "Cycle-Consistent Adversarial Networks. In IEEE International Conference on Computer Vision (ICCV).")
_CUT = ("cut", "https://arxiv.org/abs/2007.15651", """@inproceedings{park2020cut,
  title={Contrastive Learning for Unpaired Image-to-Image Translation},
  author={Park, Taesung and Efros, Alexei A and Zhang, Richard and Zhu, Jun-Yan},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2020}
}""", "Park, T., Efros, A. A., Zhang, R., & Zhu, J.-Y. (2020). Contrastive Learning for Unpaired "
    "Image-to-Image Translation. In European Conference on Computer Vision (ECCV).")
# Model kind -> (paper key, paper URL, BibTeX, APA); any other kind cites CycleGAN, whose paper
# also has the one-generator baseline ("GAN alone").
CITATIONS = {"cut": _CUT, "fastcut": _CUT}


def citation(kind: str) -> tuple[str, str, str, str]:
    return CITATIONS.get(kind, _CYCLEGAN)


# --------------------------------------------------------------------------- facts


def training_facts(checkpoint: Mapping[str, Any], path: Path, direction: str) -> dict[str, Any]:
    """What the training checkpoint at ``path`` (read as ``checkpoint``) and its run folder say
    about its ``direction`` generator, as JSON-able data."""
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    hp = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    source, target = ("a", "b") if direction == "a2b" else ("b", "a")
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    step = checkpoint.get("global_step")
    preprocess = {k: data[k] for k in ("preprocess", "load_size", "crop_size", "flip", "batch_size") if k in data}
    facts = {
        "model_class": str((checkpoint.get("hyper_parameters") or {}).get("_class_path", "")).rpartition(".")[2],
        "iterations": step, "epoch": checkpoint.get("epoch"), "recipe": hp, "preprocess": preprocess,
        "image_size": data.get("crop_size") if data.get("preprocess", "none") != "none" else None,
        "train": {"input": _folder(data, source, train=True), "output": _folder(data, target, train=True)},
        "validation": {"input": _folder(data, source, train=False), "output": _folder(data, target, train=False)},
        "metrics": _last_validation(run / "metrics.jsonl", step) if run else {},
        "best": _best(checkpoint),
        "wandb": _wandb(checkpoint, run),
        "precision": _run_config(run).get("trainer", {}).get("precision") if run else None,
    }
    if data.get("root"):
        facts["dataset"] = Path(data["root"]).name
    return facts


def _folder(data: Mapping[str, Any], domain: str, *, train: bool) -> dict[str, Any]:
    """A domain's training (or validation) folder: its name, path and image count (None when it is gone)."""
    train_key, train_name, val_key, val_name = _DATA[domain]
    key, name = (train_key, train_name) if train else (val_key, val_name)
    folder = data.get(key) or (str(Path(data["root"]) / name) if data.get("root") else None)
    if folder is None:
        return {}
    try:
        count = len(list_images(folder))
    except DataError:
        count = None  # moved or deleted since training
    return {"name": Path(folder).name, "path": str(folder), "images": count}


def _last_validation(metrics_file: Path, step: int | None) -> dict[str, Any]:
    """The validation metrics (``val/*``) of the last validation at or before ``step`` in a run's
    metrics.jsonl, with that ``step``; {} when there are none."""
    last: dict[str, Any] = {}
    try:
        lines = metrics_file.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        values = {k: v for k, v in row.items() if k.startswith("val/")}
        at = row.get("step")
        if not values or at is None or (step is not None and at > step):
            continue
        if at != last.get("step"):
            last = {"step": at}
        last.update(values)
    return last


def _best(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The monitored metric and best score ModelCheckpoint recorded, if one monitored anything."""
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, Mapping) and state.get("monitor") and state.get("best_model_score") is not None:
            return {"monitor": state["monitor"], "score": float(state["best_model_score"])}
    return {}


def _run_config(run: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _wandb(checkpoint: Mapping[str, Any], run: Path | None) -> dict[str, Any]:
    run_id = checkpoint.get(WANDB_RUN_ID)
    if not run_id:
        return {}
    logger = (_run_config(run).get("trainer", {}).get("logger") or {}) if run else {}
    args = logger.get("init_args") or {} if isinstance(logger, dict) else {}
    return {"run_id": run_id, **{k: args[k] for k in ("project", "group", "name") if args.get(k)}}


# --------------------------------------------------------------------------- card fields


def card_fields(config: Mapping[str, Any], facts: Mapping[str, Any], *, repo_id: str | None = None,
                license: str | None = None, where: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Fields of huggingface_hub's model card template (and ``card_data`` for its metadata) for the
    generator ``config`` describes (config.json), trained as ``facts`` say (:func:`training_facts`;
    {} for a model without its training checkpoint). ``repo_id``: the Hub repository it goes to;
    ``where``: how to name it otherwise (its folder, a ``wandb:`` name); ``name``: the card's title."""
    kind, direction = config["kind"], config["direction"]
    key, paper, bibtex, apa = citation(kind)
    ref = f"hf:{repo_id}" if repo_id else (where or "path/to/this/folder")
    what = _what(config, facts)
    fields = {
        "model_id": repo_id or name or (Path(where).name if where else f"{kind}-{direction}"),
        "model_summary": f"A {kind} generator that translates {what}, {_made_by(kind)}. Load it with `cyclegan`, "
                         "or with huggingface_hub's `PyTorchModelHubMixin` through "
                         "`cyclegan.inference.hub_model.HubGenerator`.",
        "model_description": _description(config, facts),
        "model_type": f"image-to-image translation generator ({_architecture(config)})",
        "license": license or DEFAULT_LICENSE,
        "repo": "the `cyclegan` toolkit; the reference implementation of the method is "
                "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix",
        "paper": paper,
        "direct_use": _direct_use(ref, config),
        "out_of_scope_use": "Images unlike the training domain (other content, sizes far from the training size) "
                            "give unpredictable results; the output is a plausible image, not a measurement.",
        "bias_risks_limitations": "A GAN generator reproduces the look of its training images, including their "
                                  "biases, and can invent or drop content. Check outputs before relying on them.",
        "get_started_code": _get_started(ref, repo_id),
        "training_data": _training_data(facts),
        "preprocessing": _preprocessing(config, facts),
        "training_regime": facts.get("precision") or "[More Information Needed]",
        "speeds_sizes_times": _progress(facts),
        "testing_data": _validation_data(facts),
        "testing_metrics": "Validation during training (`--val_metrics`): KID of the translations against real "
                           "target-domain images, and paired RMSE / pixel accuracy / SSIM / edge F1 when the "
                           "validation folders hold the same file names.",
        "results": _results(facts),
        "model_specs": "```json\n" + json.dumps({k: config[k] for k in ("kind", "direction", "generator", "input_nc",
                                                                         "output_nc", "stride")}, indent=2) + "\n```",
        "software": f"cyclegan {_version('cyclegan')}, PyTorch {_version('torch')}, "
                    f"huggingface_hub {_version('huggingface_hub')}",
        "citation_bibtex": f"```bibtex\n{bibtex}\n```",
        "citation_apa": apa,
        "more_information": _more(facts),
    }
    fields["card_data"] = {"license": license or DEFAULT_LICENSE, "model_name": fields["model_id"],
                           "tags": [kind, direction, key], "eval_results": _eval_results(config, facts)}
    return fields


def _version(package: str) -> str:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return "(unknown version)"


def _made_by(kind: str) -> str:
    if kind == "published":  # an authors' generator file (pretrained:NAME, latest_net_G_A.pth)
        return "trained with the CycleGAN authors' code and converted with the `cyclegan` toolkit"
    return "trained with the `cyclegan` toolkit (PyTorch Lightning)"


def _what(config: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    """``domain A (`trainA`, 6 images) into domain B (`trainB`, 5 images)``, or the direction alone."""
    source, target = config["direction"][0].upper(), config["direction"][-1].upper()
    train = facts.get("train") or {}

    def domain(letter: str, folder: Mapping[str, Any]) -> str:
        if not folder:
            return f"domain {letter}"
        count = "" if folder.get("images") is None else f", {folder['images']} images"
        return f"domain {letter} (`{folder['name']}`{count})"

    return f"{domain(source, train.get('input') or {})} into {domain(target, train.get('output') or {})}"


def _architecture(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in config["generator"].items())


def _description(config: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    size, preprocess = config.get("image_size"), (config.get("preprocess") or {}).get("preprocess")
    trained_on = f"{size}x{size} px crops" if size else "whole images" if preprocess == "none" else "(unknown)"
    model_class = f" ({facts['model_class']})" if facts.get("model_class") else ""
    lines = [
        f"- **Kind:** {config['kind']}{model_class}, direction `{config['direction']}`",
        f"- **Architecture:** {_architecture(config)}",
        f"- **Channels:** {config['input_nc']} in, {config['output_nc']} out; height and width multiples of "
        f"{config['stride']} (`cyclegan` pads and crops back any size)",
        f"- **Trained on:** {trained_on}",
        "- **Inputs and outputs:** NCHW float in [-1, 1] (`p / 127.5 - 1` from 8-bit pixels; back with "
        "`(y + 1) * 127.5`), as `config.json`'s `normalization` says",
    ]
    if facts.get("dataset"):
        lines.insert(1, f"- **Dataset:** `{facts['dataset']}`")
    return "\n".join(lines)


def _direct_use(ref: str, config: Mapping[str, Any]) -> str:
    return ("With the `cyclegan` toolkit installed (`pip install -e .` in its repository), wherever a "
            "checkpoint is accepted:\n\n```bash\n"
            f"cyclegan translate --checkpoint {ref} --input photos/ --output translated/\n"
            f"cyclegan evaluate  --checkpoint {ref} --input testA/ --reference trainB/\n```\n\n"
            f"The folder holds the `{config['direction']}` generator only.")


def _get_started(ref: str, repo_id: str | None) -> str:
    source = f'"{repo_id}"' if repo_id else f'"{ref}"'
    return ("```python\nfrom PIL import Image\nimport cyclegan\n\n"
            f'g = cyclegan.load_generator("{ref}")  # nn.Module, eval mode, NCHW in [-1, 1]\n'
            'out = cyclegan.translate_image(g, Image.open("input.jpg"))  # any size; pads to the stride\n'
            'out.save("output.png")\n\n'
            "# or through huggingface_hub's PyTorchModelHubMixin:\n"
            "from cyclegan.inference.hub_model import HubGenerator\n"
            f"g = HubGenerator.from_pretrained({source})\n```")


def _describe_folders(split: Mapping[str, Any]) -> list[str]:
    out = []
    for role in ("input", "output"):
        folder = split.get(role) or {}
        if folder:
            count = "no longer found at export" if folder.get("images") is None else f"{folder['images']} images"
            out.append(f"- {role}: `{folder['name']}` ({count}; `{folder['path']}` when trained)")
    return out


def _training_data(facts: Mapping[str, Any]) -> str:
    lines = _describe_folders(facts.get("train") or {})
    if not lines:
        return "[More Information Needed]"
    head = f"Unpaired image folders{' of `' + facts['dataset'] + '`' if facts.get('dataset') else ''}:"
    return "\n".join([head, *lines])


def _validation_data(facts: Mapping[str, Any]) -> str:
    lines = _describe_folders(facts.get("validation") or {})
    return "\n".join(["Validation folders:", *lines]) if lines else "[More Information Needed]"


def _preprocessing(config: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    pre = facts.get("preprocess") or {}
    parts = [f"{k} {v}" for k, v in pre.items()]
    text = f"Training: {', '.join(parts)}. " if parts else ""
    return text + ("Pixels are scaled to [-1, 1]; transparent images are composited onto white; EXIF orientation "
                   "is applied.")


def _progress(facts: Mapping[str, Any]) -> str:
    if facts.get("iterations") is None:
        return "[More Information Needed]"
    recipe = ", ".join(_setting(k, v) for k, v in (facts.get("recipe") or {}).items() if k not in _NOT_RECIPE)
    epoch = f" (in epoch {facts['epoch'] + 1})" if facts.get("epoch") is not None else ""
    return f"{facts['iterations']} iterations{epoch}. Recipe: {recipe}."


_NOT_RECIPE = {"generator", "input_nc", "output_nc", "compile", "max_nonfinite", "start_epoch"}


def _setting(key: str, value: Any) -> str:
    if isinstance(value, Mapping):
        return f"{key} " + "/".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return f"{key} [{', '.join(map(str, value))}]"
    return f"{key} {value}"


def _results(facts: Mapping[str, Any]) -> str:
    metrics = dict(facts.get("metrics") or {})
    if not metrics:
        return "No validation metrics in the training run's folder."
    step = metrics.pop("step")
    rows = "\n".join(f"| `{k}` | {v:.4g} |" for k, v in sorted(metrics.items()))
    best = facts.get("best") or {}
    note = f"\n\nBest `{best['monitor']}` over the run: {best['score']:.4g}." if best else ""
    return f"Last validation of the run, at iteration {step}:\n\n| metric | value |\n|---|---|\n{rows}{note}"


def _eval_results(config: Mapping[str, Any], facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The validation metrics of this generator's direction (``val/kid_ab`` for a2b), as
    huggingface_hub ``EvalResult`` fields (the card's model-index)."""
    suffix = "_" + config["direction"].replace("2", "")
    metrics = {k: v for k, v in (facts.get("metrics") or {}).items() if k.endswith(suffix)}
    folder = ((facts.get("validation") or {}).get("input") or {}).get("name", "validation")
    dataset = facts.get("dataset") or folder
    return [{"task_type": "image-to-image", "task_name": "Unpaired image-to-image translation",
             "dataset_type": dataset, "dataset_name": f"{dataset} ({folder})", "dataset_split": "validation",
             "metric_type": name.removeprefix("val/"), "metric_name": name, "metric_value": round(float(value), 6)}
            for name, value in sorted(metrics.items())]


def _more(facts: Mapping[str, Any]) -> str:
    lines = []
    run = facts.get("wandb") or {}
    if run:
        extra = ", ".join(f"{k} `{run[k]}`" for k in ("project", "group", "name") if k in run)
        lines.append(f"- W&B run: `{run['run_id']}`" + (f" ({extra})" if extra else ""))
    if facts.get("checkpoint_sha256"):
        lines.append(f"- Exported from the training checkpoint with sha256 `{facts['checkpoint_sha256']}`")
    return "\n".join(lines) or "[More Information Needed]"
