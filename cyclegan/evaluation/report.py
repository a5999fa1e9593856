"""What ``cyclegan evaluate`` and ``cyclegan compare`` leave behind: report.html, grid.png,
metrics.csv/json and a W&B run.

Layout of the output folder:
    report.html     protocol card, summary table, one bar chart per metric, the probe images
                    side by side with their per-image metrics (images from images/)
    grid.png        probe images: input | each model | ground truth, one row per image
    metrics.csv     one row per probe image and model, every per-image metric
    metrics.json    the card, the summary of every model and reference, and the probe rows
    images/         the probe images at the evaluation size, PNG
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cyclegan.data.grids import titled_grid
from cyclegan.evaluation import metrics as M
from cyclegan.evaluation.evaluate import Evaluation
from cyclegan.evaluation.results import evaluation_dict, format_value, highlighted, json_safe, verdict
from cyclegan.training.wandb_runs import offline_by_default, run_folder, where_is

PER_IMAGE_METRICS = ["rmse", "rmse_gcgan", "pixel_acc", "psnr", "ssim", "edge_f1", "layout_corr", "cycle_rmse"]


def probe_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``n`` sorted inputs (all of them if ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def _png(image: torch.Tensor, path: Path) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def grid_columns(ev: Evaluation) -> list[tuple[str, torch.Tensor]]:
    """(title, uint8 (N, 3, E, E)): input, each model, ground truth when there is one."""
    cols = [("input", ev.inputs)] + [(name, out) for name, out in ev.outputs.items() if ev.row_types[name] == "model"]
    if ev.targets is not None:
        cols.append(("ground truth", ev.targets))
    return cols


def write_grid(path: Path, columns: list[tuple[str, torch.Tensor]], rows: list[int], *, cell: int = 128,
               labels: list[str] | None = None) -> Path:
    """One row per index in ``rows``, one column per (title, images), each image resized to ``cell``;
    each column's title (input, the model names, ground truth) on top, each row's label (``labels[r]``,
    the image name) at its left (:func:`cyclegan.data.grids.titled_grid`)."""
    resized = [(title, torch.stack([_tile(images[r], cell) for r in rows])) for title, images in columns]
    grid = titled_grid(resized, labels=None if labels is None else [labels[r] for r in rows])
    grid.save(path)
    return path


def _tile(image: torch.Tensor, cell: int) -> torch.Tensor:
    """uint8 (3, H, W) -> (3, cell, cell), PIL bicubic."""
    resized = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((cell, cell), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def probe_rows(ev: Evaluation, rows: list[int]) -> list[dict]:
    """One dict per probe image and model: image, model, and every per-image metric (None where undefined)."""
    out = []
    for r in rows:
        for name, scores in ev.per_image.items():
            if ev.row_types[name] != "model":
                continue
            row = {"image": ev.names[r], "model": name}
            for m in PER_IMAGE_METRICS:
                v = float(scores[m][r]) if m in scores else None
                row[m] = None if v is None or not math.isfinite(v) else v
            out.append(row)
    return out


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "model", *PER_IMAGE_METRICS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def _bar_chart(ev: Evaluation, metric: str) -> str:
    """An inline SVG: one horizontal bar per model (blue) and reference (grey)."""
    items = [(name, ev.summary[name].get(metric)) for name in ev.summary]
    items = [(n, v) for n, v in items if v is not None and math.isfinite(v)]
    if not items:
        return ""
    top = max(abs(v) for _, v in items) or 1.0
    label_w, bar_w, row_h = 190, 260, 18
    parts = [f'<svg width="{label_w + bar_w + 90}" height="{row_h * len(items) + 24}" '
             f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
             f'<text x="0" y="12" font-weight="bold">{html.escape(metric)} '
             f'({"higher" if M.HIGHER_IS_BETTER[metric] else "lower"} is better)</text>']
    for i, (name, v) in enumerate(items):
        y = 20 + i * row_h
        w = max(1.0, bar_w * abs(v) / top)
        colour = "#3b6fb6" if ev.row_types[name] == "model" else "#b0b0b0"
        parts += [f'<text x="{label_w - 4}" y="{y + 12}" text-anchor="end">{html.escape(name)}</text>',
                  f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}"/>',
                  f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{html.escape(format_value(metric, v))}</text>']
    parts.append("</svg>")
    return "".join(parts)


def write_html(path: Path, ev: Evaluation, rows: list[int], images: dict[tuple[int, str], str], grid: Path) -> Path:
    metrics = [m for m in ev.metric_names() if m != "kid_std"]  # the spread goes beside the mean
    bold = highlighted(ev)
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>cyclegan compare</title><style>",
           "body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
           "padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}tr.ref td{color:#666}"
           "img{display:block}.probe td{vertical-align:top;text-align:left;font-size:11px}"
           ".charts svg{margin:6px 18px 6px 0}.verdict{font-size:1.15em;max-width:60em}</style></head><body>",
           "<h1>Translation comparison</h1>",
           "<p class='verdict'>" + e(" ".join(verdict(ev)) or "Nothing to compare.") + "</p>",
           "<h2>Protocol</h2><ul>"]
    out += [f"<li>{e(line)}</li>" for line in ev.card.lines()]
    out += [f"<li>checkpoint {e(n)}: {e(p)}</li>" for n, p in ev.checkpoints.items()]
    out.append("</ul><h2>Summary</h2><table><tr><th></th>")
    out += [f"<th>{e('kid ± std' if m == 'kid_mean' else m)} {'↑' if M.HIGHER_IS_BETTER[m] else '↓'}</th>" for m in metrics]
    out.append("</tr>")
    for name in ev.summary:
        cls = " class='ref'" if ev.row_types[name] == "reference" else ""
        out.append(f"<tr{cls}><td>{e(name)}</td>")
        for m in metrics:
            std = ev.summary[name].get("kid_std") if m == "kid_mean" else None
            cell = e(format_value(m, ev.summary[name].get(m), std))
            out.append(f"<td><b>{cell}</b></td>" if (name, m) in bold else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</table><p>Grey rows are trivial references: a score means something only relative to them. "
               "Bold: the best model on a measure, where it also beats the flat colour and the unchanged input.</p>")
    out.append("<h2>Every metric per model</h2><div class='charts'>")
    out += [_bar_chart(ev, m) for m in metrics]
    out.append(f"</div><h2>Probe images</h2><p>Also as one picture: <a href='{e(grid.name)}'>{e(grid.name)}</a></p>")
    cols = [c for c, _ in grid_columns(ev)]
    out.append("<table class='probe'><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
    for r in rows:
        out.append("<tr>")
        for c in cols:
            caption = e(ev.names[r]) if c == "input" else ""
            if c in ev.per_image:
                s = ev.per_image[c]
                caption = " ".join(f"{m} {e(format_value(m, float(s[m][r])))}" for m in PER_IMAGE_METRICS if m in s)
            if (r, c) not in images:  # an input without ground truth
                out.append("<td>no ground truth</td>")
                continue
            out.append(f"<td><img src='{e(images[(r, c)])}' width='192' height='192'>{caption}</td>")
        out.append("</tr>")
    out.append("</table></body></html>")
    path.write_text("\n".join(out))
    return path


def write_report(ev: Evaluation, out: Path, *, probe: int = 32, grid_cell: int = 128) -> dict:
    """Write every local artefact; returns their paths and the probe indices under "probes"."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = probe_indices(len(ev.names), probe)
    columns = grid_columns(ev)
    images: dict[tuple[int, str], str] = {}
    for r in rows:
        for title, batch in columns:
            if title == "ground truth" and not bool(ev.has_target[r]):
                continue
            rel = f"images/{r:04d}_{_slug(title)}.png"
            _png(batch[r], out / rel)
            images[(r, title)] = rel
    grid = write_grid(out / "grid.png", columns, rows, cell=grid_cell, labels=ev.names)
    per_image = probe_rows(ev, rows)
    written = {
        "report": write_html(out / "report.html", ev, rows, images, grid),
        "grid": grid,
        "csv": write_csv(out / "metrics.csv", per_image),
        "json": write_json(out / "metrics.json", {**evaluation_dict(ev), "probes": per_image}),
    }
    written["probes"] = rows
    return written


def log_compare_to_wandb(run, ev: Evaluation, rows: list[int], *, grid: Path | None = None) -> None:
    """One W&B run: a "probes" Table (one row per probe image: images of every column and the
    per-image metrics of every model), the summary Table, a bar chart per metric and the grid."""
    import wandb

    columns = grid_columns(ev)
    models = [n for n in ev.per_image if ev.row_types[n] == "model"]
    metric_cols = [(n, m) for n in models for m in PER_IMAGE_METRICS if m in ev.per_image[n]]
    table = wandb.Table(columns=["image", *[c for c, _ in columns], *[f"{n}/{m}" for n, m in metric_cols]])
    for r in rows:
        pictures = [wandb.Image(batch[r].permute(1, 2, 0).numpy()) if c != "ground truth" or bool(ev.has_target[r])
                    else None for c, batch in columns]
        values = [float(ev.per_image[n][m][r]) for n, m in metric_cols]
        table.add_data(ev.names[r], *pictures, *[v if math.isfinite(v) else None for v in values])
    logs = {"probes": table}
    if grid is not None:
        logs["grid"] = wandb.Image(str(grid), caption="input | " + " | ".join(c for c, _ in columns[1:]))
    run.log(logs)
    log_summary_to_wandb(run, ev)


# --------------------------------------------------------------------------- W&B


def wandb_run(*, job_type: str, group: str | None, save_dir: Path, config: dict, tags: list[str]):
    """A W&B run in project "cyclegan", offline when WANDB_MODE says so or no login is found
    (the rule of :class:`cyclegan.training.wandb_logger.WandbLogger`); returns (run, offline)."""
    import wandb  # slow to import: only when a run is asked for


    offline = offline_by_default()
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="cyclegan", dir=str(save_dir), job_type=job_type, group=group, config=config,
                     tags=tags, mode="offline" if offline else "online",
                     settings=wandb.Settings(quiet=True, silent=True, console="off"))  # we print where it is
    return run, offline


@contextmanager
def wandb_files_under(folder: Path) -> Iterator[None]:
    """While a run is logged: wandb's staging and cache folders (tables and their images, which
    otherwise go to ~/.local/share/wandb and ~/.cache/wandb) under ``folder``, so that the run and
    every file it refers to live in one place and sync from there. The environment is put back after."""
    names = {"WANDB_DATA_DIR": folder / "wandb" / "data", "WANDB_CACHE_DIR": folder / "wandb" / "cache",
             "WANDB_ARTIFACT_DIR": folder / "wandb" / "artifacts"}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(v.resolve()) for k, v in names.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def describe_run(run, offline: bool) -> str:
    """Where a finished evaluate/compare run is (the wording of ``fit``'s), and offline how to upload it."""
    line = where_is(run, offline)
    return f"{line}; upload it with: wandb sync {run_folder(run)}" if offline else line


def summary_table(ev: Evaluation):
    import wandb

    metrics = ev.metric_names()
    data = [[name, ev.row_types[name], *[json_safe(ev.summary[name].get(m)) for m in metrics]] for name in ev.summary]
    return wandb.Table(columns=["model", "kind", *metrics], data=data)


def log_summary_to_wandb(run, ev: Evaluation) -> None:
    """The summary table, one bar chart per metric (models and references), and run.summary values."""
    import wandb

    table = summary_table(ev)
    said = " ".join(verdict(ev))
    logs = {"summary": table, "verdict": wandb.Html(f"<p>{html.escape(said)}</p>")}
    for m in ev.metric_names():
        if m == "kid_std":  # a spread, not a score
            continue
        logs[f"charts/{m}"] = wandb.plot.bar(table, "model", m, title=f"{m} ({'higher' if M.HIGHER_IS_BETTER[m] else 'lower'} is better)")
    run.log(logs)
    run.summary["verdict"] = said
    for name, row in ev.summary.items():
        for m, v in row.items():
            if math.isfinite(v):
                run.summary[f"{name}/{m}"] = v
