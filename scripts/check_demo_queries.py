#!/usr/bin/env python
"""Run the demo mood queries against a published store and print what a person would judge.

    .venv/bin/python scripts/check_demo_queries.py [--home DIR] [--queries CSV] [--top-k 10] [--json]

In-process :class:`pipelines.rank.recommender.Recommender` over the store's published version
(``--home`` or ``MOODSCAPE_HOME``; read only). Per query: the detected (valence, arousal), the
top-k display names, and three counts over the top k:

- ``nm``: non-music clips: results today's music filter (:func:`pipelines.heal.musicfilter.
  classify_music`, text and audio rules, run over the store's ``raw_tracks``) drops.
- ``snd``: results whose text names any non-music sound (``AUDIT`` below: sound effects, sirens,
  crying, speech, laughter, applause, ambience …), each printed with the words that matched so a
  person can judge them; deliberately broader than the filter (a song with a siren in the mix, a
  live recording with applause count here), so it is reported, not a pass condition.
- ``agree``: results whose mood has the same sign as the detected query mood on **both** axes
  (valence and arousal; a value of exactly 0 agrees with nothing). Results without a mood disagree.

A query passes when ``nm == 0`` and ``agree >= --min-agree`` (default 8 of 10). The CSV's
``valence_sign`` / ``arousal_sign`` (the intended quadrant) are printed next to the detection.

``--refilter``: run today's music filter (:func:`pipelines.heal.musicfilter.classify_music`, text
and audio rules) over the store's ``raw_tracks`` table and exclude the served tracks it drops
(request filter ``exclude_track_ids``): the catalogue as a rebuild with this filter would hold it,
everything else (moods, vectors) as published.
"""

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines import schema as S  # noqa: E402
from pipelines import store  # noqa: E402

DEFAULT_QUERIES = REPO / "data" / "queries" / "demo_mood_queries.csv"
AUDIT = re.compile(
    r"\b(?:sound\s+effects?|sfx|foley|sirens?|crying|cries|crumpl\w*|explosions?|gunshots?|gun\s+shots?|"
    r"car\s+crash|crash(?:ing)?\s+sound|footsteps?|field\s+recordings?|ambien(?:ce|t\s+(?:noises?|sounds?))|"
    r"nature\s+sounds?|animal\s+sounds?|birds?\s+(?:chirp\w*|singing|calls?)|barking|howling|"
    r"speech|speaking|talking|narrat\w*|monologue|spoken|podcast|interview|audiobook|"
    r"battle\s*cry|war\s+horn|alarm|engine|thunder|rain\s+sounds?|water\s+(?:sounds?|splash\w*|flowing)|"
    r"wind\s+(?:noise|sounds?|blowing)|applause|laugh\w*|screams?|screaming|baby)\b",
    re.IGNORECASE,
)


def audit_words(*, tags: list[str] | None, text_doc: str | None) -> list[str]:
    """The distinct ``AUDIT`` matches in a result's tags and text document (lower-case, in order)."""
    text = " | ".join([*(tags or []), text_doc or ""])
    return list(dict.fromkeys(m.group(0).lower() for m in AUDIT.finditer(text)))


def sign(x: float | None) -> int:
    return 0 if x is None or x == 0 else (1 if x > 0 else -1)


def agrees(*, query_va: tuple[float, float], valence: float | None, arousal: float | None) -> bool:
    """Same sign as the query on both axes (0 and None never agree)."""
    qv, qa = sign(query_va[0]), sign(query_va[1])
    return qv != 0 and qa != 0 and sign(valence) == qv and sign(arousal) == qa


def read_queries(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "query" not in rows[0]:
        raise SystemExit(f"{path}: expected a CSV with a 'query' column")
    return rows


def dropped_by_filter(home: Path) -> list[str]:
    """Track ids of the store's crawl that today's music filter drops (heuristics, no classifier)."""
    import polars as pl

    from pipelines.heal.musicfilter import classify_store_crawl

    verdict = classify_store_crawl(store.StoreLayout.under_home(home))
    return verdict.filter(~pl.col(S.IS_MUSIC))[S.TRACK_ID].to_list()


def run(*, home: Path, queries: list[dict[str, str]], top_k: int, refilter: bool = False) -> list[dict]:
    from pipelines.index.bundle import load_bundle
    from pipelines.rank.recommender import Recommender
    from pipelines.rank.types import MAX_EXCLUDED_TRACKS, Filters, RecommendRequest
    from serving.display import DisplayTable

    folder = store.StoreLayout.under_home(home).current_version_dir()
    if folder is None:
        raise SystemExit(f"no published version under {home}")
    bundle = load_bundle(folder)
    rec = Recommender(bundle)
    display = DisplayTable.from_bundle(bundle)
    docs = bundle.tracks[S.TEXT_DOC].to_list() if S.TEXT_DOC in bundle.tracks.columns else None
    filters = None
    served = set(bundle.tracks[S.TRACK_ID].to_list())
    drop = [t for t in dropped_by_filter(home) if t in served]
    dropped = set(drop)
    if refilter:
        if len(drop) > MAX_EXCLUDED_TRACKS:
            raise SystemExit(f"the filter drops {len(drop)} served tracks, more than one request can exclude")
        print(f"refilter: excluding {len(drop)} served tracks today's music filter drops", file=sys.stderr)
        filters = Filters(exclude_track_ids=drop)
    out = []
    try:
        for q in queries:
            resp = rec.recommend(RecommendRequest(query=q["query"], top_k=top_k, filters=filters))
            md = resp.mood_detected
            va = (md.valence, md.arousal) if md else (0.0, 0.0)
            rows = []
            for t in resp.results:
                row = int(rec.rows_of([t.track_id])[0])
                words = audit_words(tags=t.tags, text_doc=docs[row] if docs else None)
                rows.append({
                    "track_id": t.track_id, "display": display.title(row), "non_music": t.track_id in dropped,
                    "valence": t.mood.valence, "arousal": t.mood.arousal, "mood_source": t.mood.source,
                    "agree": agrees(query_va=va, valence=t.mood.valence, arousal=t.mood.arousal),
                    "non_music_words": words,
                })
            intended = (int(q.get("valence_sign") or 0), int(q.get("arousal_sign") or 0))
            out.append({
                "query": q["query"], "detected": [round(va[0], 3), round(va[1], 3)],
                "intended_signs": list(intended),
                "detected_matches_intent": (sign(va[0]), sign(va[1])) == intended,
                "non_music": sum(r["non_music"] for r in rows),
                "sounds": sum(bool(r["non_music_words"]) for r in rows),
                "agree": sum(r["agree"] for r in rows), "results": rows,
            })
    finally:
        rec.close()
    return out


def print_table(report: list[dict], *, top_k: int, min_agree: int) -> int:
    passed = 0
    print(f"{'query':<34} {'detected (v, a)':>16} {'intent':>6} {'nm':>3} {'snd':>3} {'agree':>5}  pass")
    for r in report:
        ok = r["non_music"] == 0 and r["agree"] >= min_agree
        passed += ok
        v, a = r["detected"]
        intent = "".join("+" if s > 0 else "-" if s < 0 else "0" for s in r["intended_signs"])
        mark = "" if r["detected_matches_intent"] else "≠"
        print(f"{r['query'][:34]:<34} {v:>+7.2f} {a:>+7.2f} {mark + intent:>7} {r['non_music']:>3} {r['sounds']:>3} "
              f"{r['agree']:>3}/{top_k}  {'yes' if ok else 'NO'}")
        for i, t in enumerate(r["results"], 1):
            mood = "    n/a    " if t["valence"] is None else f"{t['valence']:+.2f} {t['arousal']:+.2f}"
            flag = ("  [" + ", ".join(t["non_music_words"]) + "]") if t["non_music_words"] else ""
            nm = " NON-MUSIC" if t["non_music"] else ""
            print(f"    {i:>2}. {'✓' if t['agree'] else '·'} {mood}  {t['display'][:70]}{flag}{nm}")
    print(f"\n{passed}/{len(report)} queries pass (no non-music in the top {top_k}, mood sign agrees "
          f"on both axes for >= {min_agree})")
    return passed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path(os.environ.get("MOODSCAPE_HOME") or store.home()))
    p.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--min-agree", type=int, default=8)
    p.add_argument("--refilter", action="store_true", help="exclude what today's music filter drops")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    args = p.parse_args(argv)
    report = run(home=args.home, queries=read_queries(args.queries), top_k=args.top_k, refilter=args.refilter)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print_table(report, top_k=args.top_k, min_agree=args.min_agree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
