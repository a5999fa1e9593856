"""Reading an :class:`~cyclegan.evaluation.evaluate.Evaluation`: values as text, the table, JSON, and the
verdict (which model is better on which measure, and whether either beats the trivial references).

A score is highlighted only where the best model also beats both trivial references (the
flat median colour and the unchanged input): anything else a user gets for free. ``kid_std``
is a spread, not a score; it is never compared, but two KIDs closer than their spreads allow
(the difference within the root sum of squares of the two stds over subsets) are a tie: no win.
"""

from __future__ import annotations

import math

import torch

from cyclegan.evaluation import metrics as M
from cyclegan.evaluation.evaluate import REF_FLAT, REF_INPUT, Evaluation

TRIVIAL = {REF_FLAT: "the flat colour", REF_INPUT: "the unchanged input"}
SPREADS = {"kid_std"}  # spreads of another score, not scores


def display_name(metric: str) -> str:
    return "kid" if metric == "kid_mean" else metric


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if M.HIGHER_IS_BETTER[metric] else a < b


def _clearly_better(metric: str, a: dict, b: dict) -> bool:
    """Row ``a`` better than row ``b`` on ``metric``; for KID by more than the spread of the difference."""
    if not _better(metric, a[metric], b[metric]):
        return False
    if metric != "kid_mean":
        return True
    spread = math.hypot(*(row.get("kid_std") if _finite(row.get("kid_std")) else 0.0 for row in (a, b)))
    return abs(a[metric] - b[metric]) > spread


def score_metrics(ev: Evaluation) -> list[str]:
    return [m for m in ev.metric_names() if m not in SPREADS]


def models(ev: Evaluation) -> list[str]:
    return [n for n in ev.summary if ev.row_types[n] == "model"]


def best_model(ev: Evaluation, metric: str) -> str | None:
    """The model better on ``metric`` than every other model; None when none has a value, or on a tie
    (equal values; KIDs within their spread)."""
    rows = {n: ev.summary[n] for n in models(ev) if _finite(ev.summary[n].get(metric))}
    best = [n for n in rows if all(_clearly_better(metric, rows[n], rows[o]) for o in rows if o != n)]
    return best[0] if len(best) == 1 else None


def reference_values(ev: Evaluation, metric: str) -> dict[str, float]:
    return {r: ev.summary[r][metric] for r in TRIVIAL if r in ev.summary and _finite(ev.summary[r].get(metric))}


def beats_references(ev: Evaluation, name: str, metric: str) -> bool:
    """True when ``name`` is better on ``metric`` than every trivial reference scored on it (and one is)."""
    row, refs = ev.summary[name], reference_values(ev, metric)
    return bool(refs) and _finite(row.get(metric)) and all(_clearly_better(metric, row, ev.summary[r]) for r in refs)


def highlighted(ev: Evaluation) -> set[tuple[str, str]]:
    """(model, metric) cells worth bold: the best model on a score, where it beats the trivial references."""
    out = set()
    for m in score_metrics(ev):
        best = best_model(ev, m)
        if best is not None and beats_references(ev, best, m):
            out.add((best, m))
    return out


def _join(metrics: list[str]) -> str:
    return ", ".join(display_name(m) for m in metrics)


def _model_sentence(ev: Evaluation, names: list[str], metrics: list[str]) -> str | None:
    metrics = [m for m in metrics if sum(_finite(ev.summary[n].get(m)) for n in names) > 1]  # e.g. not cycle_rmse
    wins = {n: [m for m in metrics if best_model(ev, m) == n] for n in names}
    if len(names) < 2 or not any(wins.values()):
        return None
    if len(names) == 2:
        (a, wa), (b, wb) = wins.items()
        if not wa or not wb:
            winner, loser = (a, b) if wa else (b, a)
            return f"{winner} is better than {loser} on every measure ({_join(wa or wb)})."
        return f"{a} is better than {b} on {_join(wa)}; {b} is better on {_join(wb)}."
    return "Best model per measure: " + "; ".join(f"{n} on {_join(ms)}" for n, ms in wins.items() if ms) + "."


def _reference_sentence(ev: Evaluation, names: list[str], metrics: list[str]) -> str | None:
    comparable = [m for m in metrics if reference_values(ev, m)]
    if not names or not comparable:
        return None
    refs = " and ".join(TRIVIAL[r].removeprefix("the ") for r in TRIVIAL if r in ev.summary)
    wins = {n: [m for m in comparable if beats_references(ev, n, m)] for n in names}
    if any(wins.values()):
        parts = [f"{n} on {_join(ms) if ms else 'no measure'}" for n, ms in wins.items()]
        return f"Beating the trivial references ({refs}): " + "; ".join(parts) + "."
    by_ref: dict[str, list[str]] = {}
    for m in comparable:  # the reference that does best where every model loses
        values = reference_values(ev, m)
        top = next(r for r in values if all(not _better(m, other, values[r]) for other in values.values()))
        by_ref.setdefault(top, []).append(m)
    who = "No model beats" if len(names) > 1 else f"{names[0]} does not beat"
    where = "; ".join(f"{TRIVIAL[r]} is better on {_join(ms)}" for r, ms in by_ref.items())
    return f"{who} the trivial references ({refs}) on any measure: {where}."


def verdict(ev: Evaluation) -> list[str]:
    """One or two sentences: which model is better on which measures, and whether any beats the references."""
    names, metrics = models(ev), score_metrics(ev)
    return [s for s in (_model_sentence(ev, names, metrics), _reference_sentence(ev, names, metrics)) if s]


def format_value(metric: str, value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    if metric == "pixel_acc":
        return f"{100 * value:.1f}%"
    if metric in ("kid_mean", "kid_std"):
        return f"{value:.4f}" + (f"±{std:.4f}" if std is not None else "")
    if metric in ("ssim", "edge_f1", "layout_corr"):
        return f"{value:.3f}"
    return f"{value:.2f}"


def format_table(ev: Evaluation) -> str:
    """A plain-text table: one row per model and reference, arrows saying which way is better."""
    metrics = [m for m in ev.metric_names() if m != "kid_std"]
    heads = ["", *[("kid" if m == "kid_mean" else m) + ("↑" if M.HIGHER_IS_BETTER[m] else "↓") for m in metrics]]
    rows = [[name, *[format_value(m, ev.summary[name].get(m), ev.summary[name].get("kid_std") if m == "kid_mean" else None)
                      for m in metrics]] for name in ev.summary]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out, previous = [line(heads)], "model"
    for name, r in zip(ev.summary, rows):
        if ev.row_types[name] != previous:  # a rule between the models and the references
            out.append("-" * len(out[0]))
            previous = ev.row_types[name]
        out.append(line(r))
    return "\n".join(out)


def json_safe(value):
    """Non-finite floats become None (JSON has no inf/NaN); tensors become lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluation_dict(ev: Evaluation) -> dict:
    # "kinds": the file's name for the row types, kept for the readers of existing metrics.json files
    return json_safe({"card": ev.card.to_dict(), "checkpoints": ev.checkpoints, "kinds": ev.row_types,
                      "summary": ev.summary, "verdict": " ".join(verdict(ev))})


