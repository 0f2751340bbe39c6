"""The evaluation report, in a folder: `report.json` (every number), `pairs.parquet` (every pair's scores, so any
number can be recomputed) and `index.html`, one self-contained page (plots drawn with matplotlib as inline SVG,
laid out with a Jinja template; no network and no script needed to view it)."""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

from .run import Evaluation

COLORS = ["#3b6ea8", "#d9822b", "#4f9a5b", "#b5485d", "#7a5ea8", "#8c7a4f", "#3d9aa0", "#777777"]


def write_report(evaluation: Evaluation, folder: str | Path, *, title: str = "rewardmill eval",
                 source: str = "", html: bool = True) -> dict:
    """Write report.json, pairs.parquet and (with `html`, which needs matplotlib) index.html into `folder`;
    return the summary."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"title": title, "input": source, **evaluation.summary()}
    (folder / "report.json").write_text(json.dumps(_clean(summary), indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    _write_pairs(evaluation, folder / "pairs.parquet")
    if html:
        (folder / "index.html").write_text(render_html(summary, evaluation), encoding="utf-8")
    return summary


def _clean(value):
    """NaN (no data) as null, so report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _write_pairs(evaluation: Evaluation, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = evaluation.pairs
    columns = {
        "pair": list(range(len(pairs))),
        "row": pa.array([p.row for p in pairs], pa.int64()),
        "subset": [p.subset for p in pairs],
        "prompt": [json.dumps(list(p.prompt), ensure_ascii=False) for p in pairs],
        "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs],
        "chosen_chars": [len(p.chosen) for p in pairs],
        "rejected_chars": [len(p.rejected) for p in pairs],
    }
    for run in evaluation.runs:
        columns[f"{run.name}.chosen"] = pa.array(run.chosen, pa.float64())
        columns[f"{run.name}.rejected"] = pa.array(run.rejected, pa.float64())
        columns[f"{run.name}.correct"] = pa.array(run.correct, pa.bool_())
        columns[f"{run.name}.error"] = pa.array(run.errors, pa.string())
        if any(c is not None for c in run.consistent):
            columns[f"{run.name}.consistent"] = pa.array(run.consistent, pa.bool_())
    pq.write_table(pa.table(columns), path)


# ------------------------------------------------------------------------------------------- plots


STYLE = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
         "svg.hashsalt": "rewardmill"}


def _styled(plot: Callable[[dict], str]) -> Callable[[dict], str]:
    """`plot` drawn and saved under `STYLE`, matplotlib's own settings put back after."""

    @functools.wraps(plot)
    def styled(summary: dict) -> str:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return plot(summary)

    return styled


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG goes inline


def _subplots(width: float, height: float, rows: int = 1, **options):
    """A figure of its own on an Agg canvas (files only, no display): pyplot's figures and backend are left
    alone, so a program that writes a report keeps its own plots as they were."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, 1, **options)


@_styled
def plot_subsets(summary: dict) -> str:
    names, subsets = list(summary["scorers"]), ["all", *[s for s in summary["subsets"] if s != "all"]]
    figure, axes = _subplots(7, 0.45 * len(subsets) * max(1, len(names)) + 1)
    height = 0.8 / len(names)
    for k, name in enumerate(names):
        entry = summary["scorers"][name]
        rows = [entry] + [entry["subsets"][s] for s in subsets[1:]]
        values = [r["accuracy"] for r in rows]
        lows = [max(0.0, v - r["ci95"][0]) if r["n"] else 0 for v, r in zip(values, rows)]
        highs = [max(0.0, r["ci95"][1] - v) if r["n"] else 0 for v, r in zip(values, rows)]
        positions = [i + k * height for i in range(len(subsets))]
        axes.barh(positions, [0 if math.isnan(v) else v for v in values], height=height * 0.9,
                  xerr=[lows, highs], color=COLORS[k % len(COLORS)], label=name, capsize=2)
    axes.axvline(0.5, color="#999999", linestyle=":", linewidth=1)
    axes.set_yticks([i + height * (len(names) - 1) / 2 for i in range(len(subsets))],
                    [f"{s} (n={summary['pairs'] if s == 'all' else _n(summary, s)})" for s in subsets])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy (chosen scored above rejected), 95% bootstrap interval")
    _legend_outside(axes)
    return _svg(figure)


def _legend_outside(axes) -> None:
    """The legend below the plot, outside the axes, so it never covers a bar or a point."""
    handles, labels = axes.get_legend_handles_labels()
    axes.figure.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(labels))), frameon=False)


def _n(summary: dict, subset: str) -> int:
    return max(entry["subsets"][subset]["n"] for entry in summary["scorers"].values())


@_styled
def plot_margins(summary: dict) -> str:
    scored = [(n, e["margins"]) for n, e in summary["scorers"].items() if e["margins"]["counts"]]
    figure, axes_list = _subplots(7, 1.8 * max(1, len(scored)), max(1, len(scored)), squeeze=False)
    for k, (name, histogram) in enumerate(scored):
        axes = axes_list[k][0]
        edges, counts = histogram["edges"], histogram["counts"]
        colors = ["#b5485d" if (a + b) / 2 <= 0 else COLORS[k % len(COLORS)] for a, b in zip(edges, edges[1:])]
        axes.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge", color=colors)
        axes.axvline(0, color="#333333", linewidth=1)
        axes.set_title(f"{name}: margin = score(chosen) - score(rejected); red: ranked wrong", fontsize=9, loc="left")
    if not scored:
        axes_list[0][0].text(0.5, 0.5, "no score margins (verdict-only scorers)", ha="center")
    return _svg(figure)


@_styled
def plot_length_bias(summary: dict) -> str:
    figure, axes = _subplots(7, 2.8)
    for k, (name, entry) in enumerate(summary["scorers"].items()):
        rows = entry["length_bias"]
        x = list(range(len(rows)))
        axes.errorbar(x, [r["accuracy"] for r in rows],
                      yerr=[[r["accuracy"] - r["ci95"][0] for r in rows], [r["ci95"][1] - r["accuracy"] for r in rows]],
                      marker="o", capsize=2, color=COLORS[k % len(COLORS)], label=name)
        axes.set_xticks(x, [f"{r['bucket']}\n(n={r['n']})" for r in rows], fontsize=7)
    axes.axhline(0.5, color="#999999", linestyle=":", linewidth=1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("length of chosen minus length of rejected (characters)")
    axes.set_ylabel("accuracy")
    _legend_outside(axes)
    return _svg(figure)


@_styled
def plot_agreement(summary: dict) -> str:
    names = list(summary["agreement"])
    matrix = [[summary["agreement"][a][b] for b in names] for a in names]
    figure, axes = _subplots(1.2 + 0.9 * len(names), 0.9 + 0.8 * len(names))
    image = axes.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_yticks(range(len(names)), names)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, "-" if value is None or math.isnan(value) else f"{value:.2f}", ha="center",
                      va="center", color="white" if value and value > 0.6 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title("share of pairs on which two scorers pick the same answer", fontsize=9)
    return _svg(figure)


# ------------------------------------------------------------------------------------------- page

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1080px;
       padding: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; }
.muted { color: #666; } table { border-collapse: collapse; margin: 12px 0; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e3e3e3; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
figure { margin: 12px 0; } figure svg { max-width: 100%; height: auto; }
.best { font-weight: 600; } .card { border: 1px solid #ddd; border-radius: 6px; padding: 12px; margin: 12px 0; }
.card pre { white-space: pre-wrap; margin: 4px 0 8px; font: 13px/1.4 ui-monospace, monospace; background: #fafafa;
            padding: 8px; border-radius: 4px; max-height: 220px; overflow: auto; }
.tag { display: inline-block; padding: 1px 6px; border-radius: 4px; font-size: 12px; margin-right: 4px; }
.right { background: #e3f1e5; } .wrong { background: #f7e1e4; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="muted">{{ pairs }} pairs{% if source %} from <code>{{ source }}</code>{% endif %}{% if input_errors %},
{{ input_errors }} rows not usable (listed below){% endif %}. Accuracy = share of pairs whose chosen answer scored
above the rejected one; a tie counts as wrong. Intervals: 95% bootstrap over pairs ({{ resamples }} resamples,
seed {{ seed }}).</p>

<h2>Summary</h2>
<table id="summary"><tr><th>scorer</th><th>accuracy</th><th>95% interval</th><th>pairs scored</th><th>ties</th>
<th>errors</th><th>position consistency</th></tr>
{% for name, s in scorers.items() %}<tr{% if name == best %} class="best"{% endif %}><td>{{ name }}{% if s.baseline %}
<span class="muted">(baseline)</span>{% endif %}</td>
<td>{{ pct(s.accuracy) }}</td><td>{{ pct(s.ci95[0]) }} – {{ pct(s.ci95[1]) }}</td><td>{{ s.n }}</td><td>{{ s.ties }}</td>
<td>{{ s.errors }}</td><td>{{ pct(s.position_consistency) if s.position_consistency is defined else "–" }}</td></tr>
{% endfor %}</table>
{% if scoring_errors %}<h2>Errors while scoring, by reason</h2>
<table id="scoring-errors"><tr><th>scorer</th><th>pairs</th><th style="text-align: left">reason (the first pair's)</th>
<th>first rows</th></tr>
{% for name, e in scoring_errors %}<tr><td>{{ name }}</td><td>{{ e.count }}</td><td style="text-align: left">
{{- e.reason }}</td><td>{{ e.rows|join(", ") }}{% if e.count > e.rows|length %}, ...{% endif %}</td></tr>
{% endfor %}</table><p class="muted">Every pair's error is in pairs.parquet (the <code>.error</code> column of each
scorer).</p>{% endif %}

<h2>Accuracy per subset</h2><figure class="plot" id="plot-subsets">{{ plots.subsets }}</figure>
<h2>Score margins</h2><figure class="plot" id="plot-margins">{{ plots.margins }}</figure>
<h2>Length bias: accuracy by length difference</h2>
<p class="muted">A scorer that just prefers longer answers rises from left to right; the length baseline does so by
construction.</p><figure class="plot" id="plot-length">{{ plots.length }}</figure>
<h2>Agreement between scorers</h2><figure class="plot" id="plot-agreement">{{ plots.agreement }}</figure>

<h2>{% if scorers|length > 1 %}Worst disagreements{% else %}Most confident mistakes{% endif %}</h2>
{% for d in disagreements %}
<div class="card"><div>{{ "row %d" % d.row if d.row is not none else "pair %d" % d.pair }} · subset {{ d.subset }} ·
{% for n in d.right %}<span class="tag right">{{ n }} right</span>{% endfor %}
{% for n in d.wrong %}<span class="tag wrong">{{ n }} wrong</span>{% endfor %}</div>
<div class="muted">prompt (last turn)</div><pre>{{ d.prompt }}</pre>
<div class="muted">chosen</div><pre>{{ d.chosen }}</pre>
<div class="muted">rejected</div><pre>{{ d.rejected }}</pre>
<div class="muted">margins: {% for n, m in d.margins.items() %}{{ n }} {{ "%.3g"|format(m) if m is not none else "–" }}{% if not loop.last %}, {% endif %}{% endfor %}</div>
</div>{% else %}<p class="muted">None.</p>{% endfor %}
{% if unusable_total %}<h2>Rows not usable</h2>
<table id="unusable"><tr><th>row</th><th>reason</th></tr>
{% for u in unusable %}<tr><td>{{ u.row if u.row is not none else "–" }}</td><td style="text-align: left">{{ u.reason }}</td></tr>
{% endfor %}</table>{% if unusable_total > unusable|length %}<p class="muted">The first {{ unusable|length }} of
{{ unusable_total }}; every one is in report.json (unusable_rows).</p>{% endif %}{% endif %}
<p class="muted">Every number above is in report.json; every pair's scores are in pairs.parquet. Rows are numbered
from 0.</p>
</body></html>
"""


def render_html(summary: dict, evaluation: Evaluation) -> str:
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    plots = {"subsets": Markup(plot_subsets(summary)), "margins": Markup(plot_margins(summary)),
             "length": Markup(plot_length_bias(summary)), "agreement": Markup(plot_agreement(summary))}
    best = best_scorer(summary)
    return environment.from_string(PAGE).render(
        title=summary["title"], source=summary["input"], pairs=summary["pairs"], input_errors=summary["input_errors"],
        resamples=summary["bootstrap_resamples"], seed=summary["seed"], scorers=summary["scorers"], best=best,
        plots=plots, disagreements=summary["disagreements"], pct=_pct,
        unusable=summary["unusable_rows"][:UNUSABLE_SHOWN], unusable_total=len(summary["unusable_rows"]),
        scoring_errors=[(name, entry) for name, s in summary["scorers"].items() for entry in s["errors_by_reason"]])


UNUSABLE_SHOWN = 200


def best_scorer(summary: dict) -> str | None:
    """The scorer with the highest accuracy, among those that are not baselines (a random or length yardstick
    that happens to come first is no result)."""
    candidates = {n: s for n, s in summary["scorers"].items() if s["n"] and not s.get("baseline")}
    return max(candidates, key=lambda n: candidates[n]["accuracy"]) if candidates else None


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"
