"""Pictures for papers (issue 22 item 10): the ``inspect`` grid (title, run, rank and metric per row, worst/best
blocks, vector PDF), the loss curve's title, and the leaderboard chart (titles that fit, sparse panels merged)."""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.cli import app

# --------------------------------------------------------------------------------------------- a PDF's text


def _literal(block: bytes, i: int) -> tuple[bytes, int]:
    """The string literal ``(...)`` opening at ``block[i]``, escapes resolved (PDF 32000-1 §7.3.4.2), and its end."""
    escapes = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
    depth, j, buffer = 1, i + 1, bytearray()
    while True:
        c = block[j]
        if c == 0x5C:  # backslash
            digits = re.match(rb"[0-7]{1,3}", block[j + 1 : j + 4])
            buffer.append(int(digits.group(), 8) & 0xFF if digits else escapes.get(block[j + 1], block[j + 1]))
            j += 1 + (len(digits.group()) if digits else 1)
            continue
        depth += (c == 0x28) - (c == 0x29)
        if depth == 0:
            return bytes(buffer), j + 1
        buffer.append(c)
        j += 1


def _stream(body: bytes, objects: dict[int, bytes]) -> bytes:
    """An object's stream, inflated; ``/Length`` given directly or as a reference (``/Length 12 0 R``)."""
    length = re.search(rb"/Length (\d+)( 0 R)?", body)
    size = int(objects[int(length.group(1))].strip()) if length.group(2) else int(length.group(1))
    start = re.search(rb"stream\r?\n", body).end()
    raw = body[start : start + size]
    return zlib.decompress(raw) if b"/FlateDecode" in body else raw


def _cmap(text: bytes) -> dict[int, str]:
    """A ToUnicode CMap: two-byte code -> text (``bfchar`` and ``bfrange`` entries)."""
    table: dict[int, str] = {}

    def uni(h: bytes) -> str:
        return bytes.fromhex(h.decode()).decode("utf-16-be")

    for section in re.findall(rb"beginbfrange\n(.*?)endbfrange", text, re.S):
        for low, high, rest in re.findall(rb"<(\w+)> <(\w+)> (\[.*?\]|<\w+>)", section):
            targets = re.findall(rb"<(\w+)>", rest)
            for n, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                if rest.startswith(b"["):
                    table[code] = uni(targets[n])
                else:
                    base = uni(targets[0])
                    table[code] = base[:-1] + chr(ord(base[-1]) + n)
    for section in re.findall(rb"beginbfchar\n(.*?)endbfchar", text, re.S):
        for code, target in re.findall(rb"<(\w+)> <(\w+)>", section):
            table[int(code, 16)] = uni(target)
    return table


def pdf_font_sizes(data: bytes) -> set[float]:
    """The point sizes (``Tf``) every text of the PDF's content streams is set in."""
    objects = {int(n): body for n, body in re.findall(rb"(?m)^(\d+) 0 obj\n(.*?)\nendobj", data, re.S)}
    sizes = set()
    for body in objects.values():
        if b"stream" in body and b"/Subtype" not in body and b"/Length1" not in body:
            sizes |= {float(x) for x in re.findall(rb"/F\d+ ([\d.]+) Tf", _stream(body, objects))}
    return sizes


def pdf_text_lines(data: bytes) -> list[str]:
    """Each text object's text, decoded through its fonts' ToUnicode maps (what a PDF viewer's search reads)."""
    objects = {int(n): body for n, body in re.findall(rb"(?m)^(\d+) 0 obj\n(.*?)\nendobj", data, re.S)}
    fonts: dict[bytes, dict[int, str]] = {}
    for body in objects.values():
        for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", body):
            unicode = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
            if unicode:
                fonts[name] = _cmap(_stream(objects[int(unicode.group(1))], objects))
    lines = []
    for body in objects.values():
        if b"stream" not in body or b"/Subtype" in body or b"/Length1" in body:
            continue
        for block in re.findall(rb"\nBT\n(.*?)\nET\n", _stream(body, objects), re.S):
            table, text, i = {}, "", 0
            while match := re.compile(rb"/(F\d+) [-\d.]+ Tf|\(").search(block, i):
                if match.group(1):
                    table, i = fonts[match.group(1)], match.end()
                    continue
                raw, i = _literal(block, match.start())
                text += "".join(table[int.from_bytes(raw[k : k + 2], "big")] for k in range(0, len(raw), 2))
            lines.append(text)
    return lines


# --------------------------------------------------------------------------------------------- the inspect grid


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """One small shapes run (image-only, 12 queries) and its result file."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    results = tmp_path_factory.mktemp("results")
    options = {"queries_per_style": 6, "renders": 1}
    request = RunRequest("image-only", "shapes", "shapes-clip:v1", "test", protocol_options=options)
    result = evaluate(resolve(request), EvalSettings(results_dir=results)).result
    return results, result


def test_row_label_names_the_query_its_rank_and_metric():
    from cirbench.stats.inspect import row_label

    hit = {"query_id": "q7", "text": "make it bigger", "targets": "a b", "first_target_rank": 3, "R@10": 1.0}
    assert row_label(hit, "R@10", "rate", 50) == "q7\n\u201cmake it bigger\u201d\nrank of first target: 3\nR@10 hit"
    miss = {"query_id": "q8", "text": "is red", "targets": "c", "first_target_rank": None, "mAP@10": 0.25}
    assert (
        row_label(miss, "mAP@10", "mean", 50) == "q8\n\u201cis red\u201d\nrank of target: not in top 50\nmAP@10 = 0.25"
    )
    long = {**miss, "text": "one two three four five six seven eight nine ten", "mAP@10": float("nan")}
    assert row_label(long, "mAP@10", "mean", 50, width=10).split("\n") == [
        "q8",
        "\u201cone two",
        "three four",
        "five six …",
        "rank of target: not in top 50",
        "mAP@10: no value",
    ]


def test_grid_heading_names_the_evaluation_and_the_run(shapes_run):
    from cirbench.stats.inspect import grid_heading
    from cirbench.stats.runs import run_scores

    _, result = shapes_run
    run = run_scores(result)
    heading, who = grid_heading(run, "mAP@10")
    assert heading == "shapes test · image-only · shapes-clip:v1"
    name = Path(result.path).name
    assert who == f"run {result.run_key} ({name}) · 12 queries · rank: the first target's place in the top 50"
    assert grid_heading(run, "mAP@10", title="Figure 3", label="baseline")[0] == "Figure 3"
    assert grid_heading(run, "mAP@10", label="baseline")[1].startswith("baseline · 12 queries")


def test_grid_pdf_is_vector_with_title_rows_and_separate_blocks(shapes_run, tmp_path):
    from cirbench.stats.inspect import per_query_table, row_label
    from cirbench.stats.runs import run_scores

    results, result = shapes_run
    grid = tmp_path / "grid.pdf"
    out = CliRunner().invoke(
        app, ["inspect", result.run_key, "--results-dir", str(results), "--grid", str(grid), "--title", "Figure (3)"]
    )
    assert out.exit_code == 0, out.output
    data = grid.read_bytes()
    assert data.startswith(b"%PDF-")
    assert b"/Subtype /Type0" in data and b"/CIDFontType2" in data and b"/Type3" not in data  # TrueType text
    assert min(pdf_font_sizes(data)) >= 9  # readable at the saved size
    lines = pdf_text_lines(data)
    assert "Figure (3)" in lines and f"run {result.run_key} ({Path(result.path).name})" in " ".join(lines)
    assert "Worst 4 of 12 queries (lowest mAP@10 first)" in lines and "Best 4 of 12 queries (the best last)" in lines
    run = run_scores(result)
    table = per_query_table(run)
    for record in (table.iloc[0].to_dict(), table.iloc[-1].to_dict()):
        for line in row_label(record, "mAP@10", "mean", 50).split("\n"):
            assert line in lines, line
    # The only rasters are the dataset's images: 8 rows x (reference, target, top 5), none for the text.
    assert data.count(b"/Subtype /Image") == 8 * 7
    assert b"/CreationDate" not in data and b"/Producer" not in data  # deterministic: no timestamp, no software
    assert b"/Title (Figure \\(3\\))" in data  # the document's title is the grid's heading


def test_grid_format_must_match_the_file(shapes_run, tmp_path):
    results, result = shapes_run
    base = ["inspect", result.run_key, "--results-dir", str(results)]
    wrong = CliRunner().invoke(app, [*base, "--grid", str(tmp_path / "g.png"), "--format", "pdf"])
    assert wrong.exit_code == 2 and "give a path ending .pdf" in wrong.output
    unknown = CliRunner().invoke(app, [*base, "--grid", str(tmp_path / "g.svg"), "--format", "svg"])
    assert unknown.exit_code == 2 and "--format 'svg'" in unknown.output and "png or pdf" in unknown.output
    png = CliRunner().invoke(app, [*base, "--grid", str(tmp_path / "g.png"), "--rows", "0"])
    assert png.exit_code == 0 and (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------- the loss curve


def test_loss_curve_title_names_the_run_corpus_and_backbone(tmp_path):
    from cirbench.lincir.trainlog import loss_curve_title, write_loss_curve

    run = tmp_path / "runs" / "seed-3" / "lincir"
    run.mkdir(parents=True)
    assert loss_curve_title(run) == "LinCIR training: run seed-3/lincir"  # no config.json: the folder alone
    config = {"backbone": "shapes-clip:v2", "corpora": ["data/corpus-20000.txt", "hf:cc3m"], "global_batch": 64}
    (run / "config.json").write_text(json.dumps(config))
    assert loss_curve_title(run) == (
        "LinCIR training: run seed-3/lincir\ncorpus corpus-20000.txt + 1 more · backbone shapes-clip:v2 · batch 64"
    )
    (run / "config.json").write_text(json.dumps({"backbone": "ViT-L-14:openai", "masks": "/m/cc3m-masks"}))
    assert loss_curve_title(run) == "LinCIR training: run seed-3/lincir\nmasks cc3m-masks · backbone ViT-L-14:openai"
    records = [{"kind": "train", "step": s, "loss": 1.0 / s, "lr": 1e-4} for s in (10, 20, 30)]
    first = write_loss_curve(records, run / "loss_curve.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and write_loss_curve(records, run / "b.png").read_bytes() == first
    assert write_loss_curve(records, run / "c.png", title="mine").read_bytes() != first


# --------------------------------------------------------------------------------------------- the chart


def _panel(benchmark: str, bars: int, toy: bool = False):
    from cirbench.leaderboard.chart import Bar, Panel

    values = [Bar(f"m{i} · b", 50.0 - i, "reported") for i in range(bars)]
    return Panel(benchmark, "test", "R@1", f"{benchmark} test: R@1", toy, tuple(values))


def test_sparse_panels_merge_into_one_per_group():
    from cirbench.leaderboard.chart import MERGED_TITLE, merge_sparse

    circo, genecis, cirr, shapes = (
        _panel("circo", 5),
        _panel("genecis", 1),
        _panel("cirr", 2),
        _panel("shapes", 1, True),
    )
    drawn = merge_sparse([genecis, circo, cirr, shapes])
    assert [p.title for p in drawn] == ["circo test: R@1", MERGED_TITLE, "shapes test: R@1"]
    merged = drawn[1]
    assert merged.sections == (("genecis test: R@1", 1), ("cirr test: R@1", 2)) and not merged.toy
    assert merged.bars == genecis.bars + cirr.bars
    assert drawn[2] == shapes  # a group of one panel stays as it is; synthetic never joins real
    assert merge_sparse([circo, _panel("fashioniq", 3)]) == [circo, _panel("fashioniq", 3)]  # nothing sparse


REPORTED = """
default_splits: {circo: test, freedom-minidn: test, genecis: test}
zero_shot: true
rows:
"""


def _title_fits(ax, fig, renderer) -> bool:  # type: ignore[no-untyped-def]
    """The title lies inside the figure and over its own panel (the plot and its row labels)."""
    box, figure = ax.title.get_window_extent(renderer), fig.bbox
    inside = figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1
    left = min(ax.bbox.x0, ax.yaxis.get_tightbbox(renderer).x0)
    return inside and left - 1 <= box.x0 and box.x1 <= ax.bbox.x1 + 1


def test_chart_titles_fit_and_a_sparse_benchmark_is_merged(tmp_path):
    from cirbench.leaderboard import collect_entries
    from cirbench.leaderboard.chart import MERGED_TITLE, chart_panels, draw_chart, draw_panels, merge_sparse

    rows = []
    for i in range(6):  # long row labels leave MiniDomainNet's plot narrow: its long title must wrap, not clip
        variant = f"a long variant name number {i} (kappa 20, mu 7, nu 7)"
        rows.append(
            f"  - {{method: freedom, variant: '{variant}', backbone: ViT-L-14:openai, source: s{i},"
            f" freedom-minidn: {{avg_mAP: {30 - i}}}, circo: {{mAP@10: {20 - i}}}}}"
        )
    rows.append("  - {method: lincir, backbone: ViT-L-14:openai, source: g, genecis: {avg_R@1: 12.2}}")
    reported = tmp_path / "reported.yaml"
    reported.write_text(REPORTED + "\n".join(rows) + "\n")
    entries = collect_entries(tmp_path / "none", reported)
    panels = chart_panels(entries)
    assert {p.benchmark for p in panels} == {"circo", "freedom-minidn", "genecis"}
    drawn = merge_sparse(panels)
    assert [p.title for p in drawn][-1] == MERGED_TITLE and drawn[-1].sections == (("GeneCIS test: avg_R@1", 1),)
    fig = draw_chart(entries)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.get_axes():
        title = ax.title
        if not title.get_text():
            continue
        assert _title_fits(ax, fig, renderer), title.get_text()
        boxes.append(title.get_window_extent(renderer))
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    titles = [ax.title.get_text().replace("\n", " ") for ax in fig.get_axes()]
    assert "MiniDomainNet (FreeDom) test: avg_mAP" in titles and MERGED_TITLE in titles
    # A title far wider than its panel is wrapped at words (nothing lost), and fits.
    long = "An Extraordinarily Long Benchmark Title (With Its Suite Name) test: avg_mAP over every domain"
    fig = draw_panels([_panel("circo", 4), dataclasses.replace(_panel("other", 4), title=long)])
    fig.draw_without_rendering()
    title = fig.get_axes()[1].title
    assert "\n" in title.get_text() and title.get_text().replace("\n", " ") == long
    assert _title_fits(fig.get_axes()[1], fig, fig.canvas.get_renderer())
