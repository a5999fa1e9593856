"""A generator with huggingface_hub's ``PyTorchModelHubMixin``: ``save_pretrained``, ``from_pretrained``
and ``push_to_hub`` as every Hub model has them, and the model card from huggingface_hub's own template.

    from cyclegan.inference.hub_model import HubGenerator
    g = HubGenerator.from_pretrained("ORG/NAME")        # or a folder from `cyclegan export --format hf`
    y = g(x)                                            # (N, C, H, W) in [-1, 1], H and W multiples of g.stride

The weights are the wrapped generator's own (``module``: the mixin saves it under its own tensor
names), so ``model.safetensors`` loads into a plain :func:`~cyclegan.models.networks.build_generator`
network as well. Loading is strict and safetensors-only: a folder whose weights do not fit its
config.json is refused, and a ``pytorch_model.bin`` (a pickle) is never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from huggingface_hub.repocard_data import EvalResult
from torch import nn

from cyclegan.errors import CheckpointError
from cyclegan.inference.hub import build_from_config, load_weights

REPO_URL = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"  # the method's reference code
PAPER_URL = "https://arxiv.org/abs/1703.10593"


class HubGenerator(
    nn.Module, PyTorchModelHubMixin,
    library_name="cyclegan", pipeline_tag="image-to-image", tags=["cyclegan", "unpaired-image-to-image", "gan"],
    repo_url=REPO_URL, paper_url=PAPER_URL,
    model_card_template=ModelCard.default_template_path.read_text(),  # huggingface_hub's model card template
):
    """One generator, built from the contents of config.json (``generator``: the architecture;
    ``input_nc``, ``output_nc``: channels; the rest, such as ``direction`` and ``kind``, is kept
    in ``config``)."""

    def __init__(self, generator: dict, input_nc: int = 3, output_nc: int = 3, **config: Any) -> None:
        super().__init__()
        self.config = {"generator": dict(generator), "input_nc": input_nc, "output_nc": output_nc, **config}
        self.module = build_from_config(self.config, source="config.json")
        self.stride = getattr(self.module, "stride", 1)

    @classmethod
    def wrap(cls, net: nn.Module, config: Mapping[str, Any]) -> HubGenerator:
        """A HubGenerator around trained ``net`` (built from ``config``), sharing its weights."""
        model = cls(**config)
        model.module = net
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    @classmethod
    def _load_as_safetensor(cls, model: HubGenerator, model_file: str, map_location: str, strict: bool) -> HubGenerator:
        load_weights(model.module, model_file, config_path="config.json")  # always strict
        return model.to(map_location).eval()

    @classmethod
    def _load_as_pickle(cls, model: HubGenerator, model_file: str, map_location: str, strict: bool) -> HubGenerator:
        raise CheckpointError(f"{model_file}: cyclegan reads model.safetensors only, never pickled weights")

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """huggingface_hub's model card template, filled with ``kwargs`` (its fields, from
        :func:`cyclegan.inference.model_card.card_fields`); ``card_data`` updates the metadata
        (license, tags, eval_results as dicts, model_name)."""
        info = self._hub_mixin_info
        extra = dict(kwargs.pop("card_data", {}) or {})
        results = [EvalResult(**r) for r in extra.pop("eval_results", None) or []]
        tags = sorted({*(info.model_card_data.tags or []), *extra.pop("tags", [])})
        data = ModelCardData(library_name=info.model_card_data.library_name,
                             pipeline_tag=info.model_card_data.pipeline_tag, tags=tags,
                             eval_results=results or None, **extra)
        return ModelCard.from_template(data, template_str=info.model_card_template, repo_url=info.repo_url,
                                       paper_url=info.paper_url, docs_url=info.docs_url, **kwargs)


def save_folder(net: nn.Module, folder: str | Path, *, config: Mapping[str, Any],
                card: Mapping[str, Any] | None = None) -> Path:
    """Write ``net`` as a model folder (huggingface_hub's ``save_pretrained``): its weights as
    model.safetensors, ``config`` as config.json and a model card filled from ``card``
    (:func:`cyclegan.inference.model_card.card_fields`)."""
    folder = Path(folder)
    HubGenerator.wrap(net, config).save_pretrained(folder, model_card_kwargs=dict(card or {}))
    return folder
