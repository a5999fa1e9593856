"""evaluate/compare translate at the models' training size unless told, say so, and warn once when
the models disagree or the size asked is far from theirs."""

import logging
from types import SimpleNamespace

from cyclegan.evaluation.sizes import DEFAULT_SIZE, announce, choose_sizes


def _models(*sizes):
    return [SimpleNamespace(metadata={"training_size": s}) for s in sizes], [f"m{i}" for i in range(len(sizes))]


def test_the_training_size_unless_told():
    translators, names = _models(64, 64)
    chosen = choose_sizes(translators, names)
    assert (chosen.size, chosen.translate_size, chosen.warning) == (64, 64, None)
    assert chosen.why == "the size the models were trained at"
    asked = choose_sizes(translators, names, size=72)  # near 64: no warning
    assert (asked.size, asked.translate_size, asked.why, asked.warning) == (72, 72, "as asked", None)
    split = choose_sizes(translators, names, size=256, translate_size=64)  # scored large, translated at 64
    assert (split.size, split.translate_size, split.warning) == (256, 64, None)


def test_unknown_sizes_fall_back_to_the_default_and_say_why():
    translators, names = _models(None)
    chosen = choose_sizes(translators, names)
    assert chosen.translate_size == DEFAULT_SIZE and "do not record" in chosen.why and chosen.warning is None


def test_one_warning_line_for_different_or_far_sizes(caplog):
    translators, names = _models(64, 256)
    chosen = choose_sizes(translators, names)
    assert chosen.translate_size == 256 and chosen.why == "the largest of the models' training sizes"
    assert "different sizes (m0 64 px, m1 256 px)" in chosen.warning
    far = choose_sizes(*_models(64), size=256)
    assert "256 px, far from the size trained at (m0 64 px)" in far.warning
    with caplog.at_level(logging.WARNING, logger="cyclegan"):
        notes = announce(far)
    assert [r.getMessage() for r in caplog.records] == [f"warning: {far.warning}"]
    assert notes == [f"sizes: {far.warning}"]
    assert announce(choose_sizes(*_models(64))) == []
