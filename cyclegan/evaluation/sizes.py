"""Which size evaluate/compare translate and score at: the models' training size unless told.

A generator works best at the scale it was trained at: a 64 px model run on 256 px images sees
shapes four times larger than any it learnt, and scores as if it had not learnt much. So
without a size the models' own (``Translator.metadata["training_size"]``, the crop size of
their training) is used; with models trained at different sizes, or a size far from a
model's, one warning line says so, and the protocol card says which size was used and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from cyclegan.errors import warn
from cyclegan.inference.translator import Translator

DEFAULT_SIZE = 256  # when no model says what it was trained at (the published recipe's crop)
FAR = 1.5  # a size this factor (or more) above or below a model's training size gets a warning


@dataclass(frozen=True)
class Sizes:
    """``size``: scoring size; ``translate_size``: what the generators see; ``why``: for the protocol
    line (why ``translate_size``); ``warning``: one line, or None."""

    size: int
    translate_size: int
    why: str
    warning: str | None = None


def training_sizes(translators: list[Translator], names: list[str]) -> dict[str, int]:
    """Row name -> training size, for the models whose file records one."""
    sizes = {name: t.metadata.get("training_size") for t, name in zip(translators, names)}
    return {name: int(s) for name, s in sizes.items() if s}


def _far(size: int, trained: int) -> bool:
    return max(size / trained, trained / size) >= FAR


def choose_sizes(translators: list[Translator], names: list[str], *, size: int | None = None,
                 translate_size: int | None = None) -> Sizes:
    """The sizes to evaluate at: ``translate_size``, else ``size``, else the models' training size
    (the largest, when they differ); scored at ``size``, else at the translation size."""
    trained = training_sizes(translators, names)
    if translate_size:
        chosen, why = translate_size, "as asked"
    elif size:
        chosen, why = size, "as asked"
    elif trained:
        chosen = max(trained.values())
        why = ("the size the models were trained at" if len(set(trained.values())) == 1
               else "the largest of the models' training sizes")
    else:
        chosen, why = DEFAULT_SIZE, "the default: the models do not record their training size"
    listed = ", ".join(f"{name} {s} px" for name, s in trained.items())
    warning = None
    if len(set(trained.values())) > 1:
        warning = (f"the models were trained at different sizes ({listed}); all translate at {chosen} px, which "
                   f"favours the model trained nearest to it (--size to choose)")
    elif any(_far(chosen, s) for s in trained.values()):
        who = "the models translate" if len(trained) > 1 else "the model translates"
        warning = (f"{who} at {chosen} px, far from the size trained at ({listed}): shapes at a scale never "
                   f"learnt score worse than the model is (--size to choose)")
    return Sizes(size=size or chosen, translate_size=chosen, why=why, warning=warning)


def announce(sizes: Sizes) -> list[str]:
    """Say the warning (one line through :func:`cyclegan.errors.warn`); the card's note for it."""
    if sizes.warning is None:
        return []
    warn(f"warning: {sizes.warning}")
    return [f"sizes: {sizes.warning}"]
