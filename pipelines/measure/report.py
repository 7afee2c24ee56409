"""The readable evaluation report: ``report.md`` with tables of every number, the metric
definitions, and PNG plots (matplotlib's Agg canvas; pyplot and its global backend are not used).
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.store import atomic_path

SCATTER_PNG = "mood_scatter.png"
PRECISION_PNG = "precision_per_query.png"

DEFINITIONS = """\
- **query_mood** — Pearson r and Lin's CCC between the model's (valence, arousal) for each query
  text and its labels.
- **track_mood** — the same between each track's stored mood and LABELS; `*_accuracy` = fraction
  with the same sign per axis (0 counts as positive); `quadrant_accuracy` = both signs right.
  `by_source` splits the tracks by the store's `mood_source`. Tracks without a stored mood are
  excluded.
- **ranking** — per query, top 50 requested with no filters. A track is *relevant* iff its
  labelled valence and arousal have the same signs as the query's target (0 counts as positive);
  unlabelled tracks are not relevant and have gain 0.
  - precision@10 = relevant in top 10 / 10;
  - recall@50 = relevant in top 50 / min(50, relevant labelled tracks in the corpus);
  - ndcg@20 with graded gain g = max(0, 1 − ‖label − target‖₂ / √2), ideal DCG from the 20 best
    gains in the whole labelled corpus;
  - mood_alignment@10 = 1 − mean ‖label − target‖₂ / (2√2) over the top 10 (unlabelled = worst);
  - artist_diversity@50 = distinct non-null artists / results with a non-null artist;
  - ild@50 = mean pairwise (1 − cosine) of the results' text embeddings.

  Means over queries; a query where a metric is undefined (e.g. recall with no relevant track in
  the corpus) is skipped for that metric.
- **baseline_sbert** — MiniLM embedding of the query, exact inner-product search over the tracks'
  text embeddings, top 50, nothing else (`mode: "baseline"`).
- **full** — the whole system (`mode: "full"`): the learned ranker when the store publishes one,
  else the hand weights. With `--ablate` also: **hand** = the hand weights, no ranker;
  **no_text** / **no_audio** / **no_mood** = the hand weights with that signal's weight set to 0.
- **latency_ms** — p50/p95/p99 wall time of one `recommend` call, in-process.
- **sounds_like** — audio only: for each track with extracted (not imputed) audio and a genre in
  CORPUS, its 10 nearest other tracks among the tracks with extracted audio (leave-one-out);
  precision@10 = share of them in the track's (first) genre, averaged over tracks, also per genre.
  Genres only score; no similarity uses them. `handcrafted` = the librosa vector standardised over
  these tracks, cosine; `handcrafted_timbre` = its MFCC, chroma and spectral-contrast columns alone;
  `msd_embedding` / `mtt_embedding` = the backbone's embeddings, cosine; `backbone` = both,
  each L2-normalised, concatenated; `backbone+handcrafted` = those plus the standardised librosa
  block; `served` = the service's audio retrieval for one seed (the audio leg of "more like this":
  the seed's vector searched in the published audio index, here among these tracks only).
  `chance` = expected precision of neighbours drawn at random.
- `—` marks an undefined number (`null` in report.json), e.g. a correlation with a constant input.
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.3f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_mood_scatter(
    *, pred: np.ndarray, labels: np.ndarray, sources: Sequence[str], path: Path
) -> Path:
    """Two panels (valence, arousal): labelled (x) vs predicted (y), n points each, by source.

    ``pred`` and ``labels`` are (n, 2); ``sources`` the n tracks' ``mood_source``.
    """
    from matplotlib.figure import Figure

    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 2)
    src = np.asarray([str(s) for s in sources], dtype=object)
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    names = sorted(set(src.tolist()))
    colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
    for col, (ax, axis_name) in enumerate(zip(axes, ("valence", "arousal"))):
        for name in names:
            m = src == name
            ax.scatter(labels[m, col], pred[m, col], s=9, alpha=0.55, c=colours[name],
                       label=f"{name} (n={int(m.sum())})", edgecolors="none")
        ax.plot([-1, 1], [-1, 1], color="0.4", lw=0.8, ls="--")
        ax.axhline(0, color="0.8", lw=0.6)
        ax.axvline(0, color="0.8", lw=0.6)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel(f"labelled {axis_name}")
        ax.set_ylabel(f"predicted {axis_name}")
        ax.set_title(f"track {axis_name}")
    axes[0].legend(loc="upper left", fontsize=8, title="mood_source", title_fontsize=8)
    _save(fig, path)
    return path


def plot_precision_distribution(*, per_query_precision: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Histogram and box plot of per-query precision@10 for each ranking mode (full vs baseline)."""
    from matplotlib.figure import Figure

    names = list(per_query_precision)
    data = [np.asarray(per_query_precision[n], dtype=np.float64) for n in names]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_hist, ax_box = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    bins = np.arange(12) * 0.1 - 0.05  # one bin centred on each attainable value 0.0, 0.1, … 1.0
    for i, (name, x) in enumerate(zip(names, data)):
        ax_hist.hist(x, bins=bins, alpha=0.5, color=f"C{i}", label=f"{name} (mean {x.mean():.3f})"
                     if x.size else name)
    ax_hist.set_xlabel("precision@10 per query")
    ax_hist.set_ylabel("queries")
    ax_hist.legend(fontsize=8)
    ax_box.boxplot([x if x.size else np.zeros(1) for x in data], showmeans=True)
    ax_box.set_xticks(range(1, len(names) + 1), names)
    ax_box.set_ylim(-0.05, 1.05)
    ax_box.set_ylabel("precision@10")
    fig.suptitle("per-query precision@10")
    _save(fig, path)
    return path


def _sounds_like_md(section: Mapping[str, Any] | None) -> str:
    head = "\n## Sounds like (audio only: same-genre precision of the nearest tracks)\n\n"
    if not section:
        return head + "_Not computed: CORPUS has no genre._\n"
    if "skipped" in section:
        return head + f"_Not computed: {section['skipped']}._\n"
    k, methods = section["k"], section["methods"]
    key = f"precision@{k}"
    genres = list(section.get("genres", []))
    rows = [
        [name, m.get("dims"), m.get(key), m.get("n"),
         *[(m.get("by_genre", {}).get(g) or {}).get(key) for g in genres]]
        for name, m in methods.items()
    ]
    rows.append(["chance", None, section.get("chance"), section.get("n_with_genre"), *[None] * len(genres)])
    text = (f"{section['n_tracks']} tracks with extracted audio, {section['n_with_genre']} with a genre; "
            f"k = {k}.\n\n")
    text += _table(["method", "dims", key, "n", *genres], rows)
    counts = {g: max((m.get("by_genre", {}).get(g) or {}).get("n", 0) for m in methods.values()) for g in genres}
    text += "\nTracks per genre: " + ", ".join(f"{g} {n}" for g, n in counts.items()) + ".\n"
    return head + text


def render_markdown(
    *, report: Mapping[str, Any], scatter_png: str | None, precision_png: str | None
) -> str:
    """The markdown text of a report dict shaped like report.json (values may be None)."""
    out: list[str] = ["# Moodscape evaluation report\n"]
    out.append(_table(["tracks", "queries"], [[report.get("n_tracks"), report.get("n_queries")]]))

    qm = report.get("query_mood")
    out.append("\n## Query mood (query text → valence, arousal)\n")
    if qm:
        out.append(_table(
            ["axis", "Pearson r", "Lin's CCC", "n"],
            [["valence", qm["valence_r"], qm["valence_ccc"], qm["n"]],
             ["arousal", qm["arousal_r"], qm["arousal_ccc"], qm["n"]]],
        ))
    else:
        out.append("_Not computed: no QUERIES given._\n")

    tm = report.get("track_mood")
    out.append("\n## Track mood (stored mood vs LABELS)\n")
    if tm:
        out.append(_table(
            ["valence r", "arousal r", "valence sign acc.", "arousal sign acc.", "quadrant acc.", "n"],
            [[tm["valence_r"], tm["arousal_r"], tm["valence_accuracy"], tm["arousal_accuracy"],
              tm["quadrant_accuracy"], tm["n"]]],
        ))
        out.append("\nBy `mood_source`:\n\n")
        out.append(_table(
            ["mood_source", "n", "valence r", "arousal r"],
            [[k, v["n"], v["valence_r"], v["arousal_r"]] for k, v in tm.get("by_source", {}).items()],
        ))
        if scatter_png:
            out.append(f"\n![predicted vs labelled track mood]({scatter_png})\n")
    else:
        out.append("_Not computed: no LABELS given._\n")

    rk = report.get("ranking")
    out.append("\n## Ranking (means over queries)\n")
    if rk:
        modes = list(rk)
        keys = list(next(iter(rk.values())).keys()) if rk else []
        out.append(_table(["metric", *modes], [[k, *[rk[m].get(k) for m in modes]] for k in keys]))
        lat = report.get("latency_ms") or {}
        if lat:
            out.append("\n### Latency of one recommend call (ms)\n\n")
            out.append(_table(["mode", "p50", "p95", "p99"],
                              [[m, v["p50"], v["p95"], v["p99"]] for m, v in lat.items()]))
        if precision_png:
            out.append(f"\n![per-query precision@10]({precision_png})\n")
    else:
        out.append("_Not computed: ranking needs both LABELS and QUERIES._\n")

    out.append(_sounds_like_md(report.get("sounds_like")))

    out.append("\n## Definitions\n\n")
    out.append(DEFINITIONS)
    return "\n\n".join(chunk.strip("\n") for chunk in out if chunk.strip()) + "\n"


def write_report_md(
    *,
    report: Mapping[str, Any],
    out_dir: Path,
    scatter: tuple[np.ndarray, np.ndarray, Sequence[str]] | None,
    per_query_precision: Mapping[str, Sequence[float]] | None,
) -> Path:
    """Write ``out_dir/report.md`` and its plots (``mood_scatter.png``, ``precision_per_query.png``).

    ``scatter`` = (pred (n, 2), labels (n, 2), mood_source per track) or None;
    ``per_query_precision`` = {mode: precision@10 per query} or None.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scatter_png = precision_png = None
    if scatter is not None and len(scatter[2]) > 0:
        plot_mood_scatter(pred=scatter[0], labels=scatter[1], sources=scatter[2],
                          path=out_dir / SCATTER_PNG)
        scatter_png = SCATTER_PNG
    if per_query_precision:
        plot_precision_distribution(per_query_precision=per_query_precision,
                                    path=out_dir / PRECISION_PNG)
        precision_png = PRECISION_PNG
    text = render_markdown(report=report, scatter_png=scatter_png, precision_png=precision_png)
    target = out_dir / "report.md"
    with atomic_path(target, ".md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
