"""The compare report reads its results: a verdict on top, bold only where a model beats the
trivial references, kid_std never a score, labelled grid rows. Synthetic evaluations: no models run."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from cyclegan.evaluation import metrics as M
from cyclegan.evaluation.evaluate import REF_FLAT, REF_INPUT, Evaluation
from cyclegan.evaluation.report import write_grid, write_report
from cyclegan.evaluation.results import highlighted, verdict

N, E = 3, 16


def _evaluation(summary: dict[str, dict[str, float]]) -> Evaluation:
    g = torch.Generator().manual_seed(0)
    images = lambda: torch.randint(0, 256, (N, 3, E, E), generator=g, dtype=torch.uint8)  # noqa: E731
    row_types = {name: "reference" if name.startswith("ref:") else "model" for name in summary}
    per_image = {name: {m: torch.full((N,), v) for m, v in row.items() if m != "kid_std"} for name, row in summary.items()}
    card = M.ProtocolCard(direction="a2b", input_dir="in", n_inputs=N, eval_size=E, translate_size=E, resize_filter="bicubic")
    return Evaluation(card=card, names=[f"img{i}.png" for i in range(N)], inputs=images(), targets=images(),
                      has_target=torch.ones(N, dtype=torch.bool), outputs={n: images() for n in summary},
                      per_image=per_image, summary=summary, row_types=row_types)


def _row(rmse, edge_f1, kid, kid_std=0.0):
    return {"rmse": rmse, "edge_f1": edge_f1, "kid_mean": kid, "kid_std": kid_std}


def _verdict_in(page: str) -> str:
    return re.search(r"<p class='verdict'>([^<]*)</p>", page).group(1)


def test_when_the_flat_colour_wins_the_report_says_so_and_bolds_nothing(tmp_path):
    ev = _evaluation({"method1": _row(60, 0.10, 0.30, kid_std=0.001), "cyclegan": _row(70, 0.12, 0.20),
                      REF_FLAT: _row(40, 0.0, 0.10), REF_INPUT: _row(80, 0.20, 0.25)})
    sentences = verdict(ev)
    assert sentences == [
        "method1 is better than cyclegan on rmse; cyclegan is better on edge_f1, kid.",
        "No model beats the trivial references (flat colour and unchanged input) on any measure: "
        "the flat colour is better on rmse, kid; the unchanged input is better on edge_f1.",
    ]
    assert highlighted(ev) == set()  # kid_std 0.001 of method1 is the smallest "value" yet no score
    written = write_report(ev, tmp_path / "r", probe=2, grid_cell=16)
    page = written["report"].read_text()
    assert _verdict_in(page) == " ".join(sentences).replace("'", "&#x27;")
    assert "<b>" not in page.split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert "kid_std" not in page and "0.3000±0.0010" in page  # the spread beside its mean, not a column


def test_when_a_model_beats_the_references_its_scores_are_bold(tmp_path):
    ev = _evaluation({"method1": _row(60, 0.10, 0.30), "cyclegan": _row(30, 0.35, 0.05),
                      REF_FLAT: _row(40, 0.0, 0.10), REF_INPUT: _row(80, 0.20, 0.25)})
    assert verdict(ev) == [
        "cyclegan is better than method1 on every measure (rmse, edge_f1, kid).",
        "Beating the trivial references (flat colour and unchanged input): method1 on no measure; "
        "cyclegan on rmse, edge_f1, kid.",
    ]
    assert highlighted(ev) == {("cyclegan", "rmse"), ("cyclegan", "edge_f1"), ("cyclegan", "kid_mean")}
    page = write_report(ev, tmp_path / "r", probe=2, grid_cell=16)["report"].read_text()
    assert "cyclegan is better than method1 on every measure" in _verdict_in(page)
    table = page.split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert re.findall(r"<b>([^<]*)</b>", table) == ["30.00", "0.350", "0.0500±0.0000"]


def test_a_tie_is_no_win():
    ev = _evaluation({"a": _row(50, 0.2, 0.3), "b": _row(50, 0.1, 0.3), REF_FLAT: _row(60, 0.0, 0.4)})
    assert verdict(ev)[0] == "a is better than b on every measure (edge_f1)."
    assert highlighted(ev) == {("a", "edge_f1")}


def test_kids_within_their_spread_are_a_tie_not_a_win():
    # The demo's numbers: method 1's KID 0.042 ± 0.005 against the unchanged input's 0.044 ± 0.004 is
    # no win; CycleGAN's 0.012 ± 0.004 is.
    ev = _evaluation({"cyclegan": _row(24, 0.93, 0.012, 0.004), "method1": _row(41, 0.90, 0.042, 0.005),
                      REF_FLAT: _row(91, 0.0, 0.344, 0.01), REF_INPUT: _row(64, 0.77, 0.044, 0.004)})
    assert verdict(ev) == [
        "cyclegan is better than method1 on every measure (rmse, edge_f1, kid).",
        "Beating the trivial references (flat colour and unchanged input): cyclegan on rmse, edge_f1, kid; "
        "method1 on rmse, edge_f1.",
    ]
    close = _evaluation({"a": _row(50, 0.2, 0.030, 0.004), "b": _row(60, 0.1, 0.035, 0.004)})
    assert verdict(close) == ["a is better than b on every measure (rmse, edge_f1)."]


def test_one_model_gets_one_sentence_about_the_references():
    ev = _evaluation({"cyc": _row(30, 0.05, 0.5), REF_FLAT: _row(40, 0.0, 0.1), REF_INPUT: _row(80, 0.2, 0.25)})
    assert verdict(ev) == ["Beating the trivial references (flat colour and unchanged input): cyc on rmse."]


def test_progress_bars_only_when_asked_and_on_a_terminal(tmp_path, monkeypatch):
    import io
    import sys

    from cyclegan.evaluation.evaluate import load_images

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 20), (i, 0, 0)).save(paths[-1])

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, progress, shown in ((Terminal(), True, True), (Terminal(), False, False), (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        out = load_images(paths, [16], filter="bicubic", desc="reading inputs", progress=progress)
        assert out[16].shape == (3, 3, 16, 16)
        assert ("reading inputs" in stream.getvalue() and "/3 [" in stream.getvalue()) == shown


def test_grid_rows_and_columns_are_labelled(tmp_path):
    ev = _evaluation({"method1": _row(1, 1, 1), "cyclegan": _row(1, 1, 1)})
    white = torch.full((N, 3, E, E), 255, dtype=torch.uint8)
    columns = [("method1", white), ("cyclegan", white)]
    labelled = np.asarray(Image.open(write_grid(tmp_path / "a.png", columns, [0, 1, 2], cell=32, labels=ev.names)).convert("L"))
    plain = np.asarray(Image.open(write_grid(tmp_path / "b.png", columns, [0, 1, 2], cell=32)).convert("L"))
    strip = labelled.shape[1] - plain.shape[1]
    assert strip > 20 and labelled.shape[0] == plain.shape[0]
    header = plain.shape[0] - 3 * 34 - 2
    rows = [labelled[header + 2 + i * 34: header + 34 + i * 34, :strip] for i in range(3)]
    assert all((r < 128).any() for r in rows) and (rows[0] != rows[1]).any()  # img0.png, img1.png, img2.png
    assert (labelled[:, strip:] == plain).all()  # the strip is added at the left, the rest unchanged
    titles = [plain[:header, 2 + j * 34: 34 + j * 34] for j in range(2)]
    assert (titles[0] != titles[1]).any()  # method1 vs cyclegan in the header


def test_progress_bars_show_on_a_terminal_that_reports_no_width():
    """A pseudo-terminal nobody sized (``script``, some IDEs and containers) reports 0 columns: tqdm
    draws a bar 0 wide there, i.e. nothing. The bars take 80 columns instead."""
    import os
    import pty
    import subprocess
    import sys

    main, child = pty.openpty()  # a fresh pty: 0 rows, 0 columns
    assert os.get_terminal_size(child).columns == 0
    code = ("from cyclegan.evaluation.evaluate import progress_bar\n"
            "bar = progress_bar(None, desc='features (references)', total=4)\n"
            "[bar.update(1) for _ in range(4)]\nbar.refresh()\nprint('wide', bar.ncols, flush=True)\nbar.close()\n")
    process = subprocess.run([sys.executable, "-c", code], stdin=child, stdout=child, stderr=child, timeout=60)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child's side is closed: everything is read
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "features (references)" in text and "4/4" in text and "wide 80" in text
