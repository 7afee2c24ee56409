"""Model selection and fitting of the learned ranker (xgboost ``rank:ndcg``, LambdaMART).

Folds are artist-disjoint and query-disjoint: each candidate group (artist, EMOPIA song) and each
query is assigned to one of N_FOLDS folds; fold k trains on the pairs whose query *and* candidate
group lie outside k and tests on the pairs whose query and group both lie in k. Every config of
GRID is scored by its mean test NDCG@10 over the folds (the hand scores are scored on the same
test pairs); the best is refitted on every pair. Gains are ``2^grade − 1``.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from pipelines.rank.features import FEATURE_NAMES
from pipelines.rank.learned import LearnedRanker
from pipelines.rank.ranker_training import Examples

N_FOLDS = 3
# (max_depth, eta, n_estimators)
GRID: tuple[tuple[int, float, int], ...] = ((3, 0.15, 80), (5, 0.15, 80))
NDCG_KS = (10, 20)


def _dcg(gains: np.ndarray) -> float:
    return float(gains @ (1.0 / np.log2(np.arange(2, len(gains) + 2))))


def ndcg_by_query(*, scores: np.ndarray, y: np.ndarray, qid: np.ndarray, k: int) -> np.ndarray:
    """(q,) NDCG@k per query with a positive grade (queries without one are left out)."""
    out = []
    for q in np.unique(qid):
        sel = qid == q
        gains = (2.0 ** y[sel]) - 1.0
        ideal = _dcg(np.sort(gains)[::-1][:k])
        if ideal <= 0:
            continue
        order = np.argsort(-scores[sel], kind="stable")[:k]
        out.append(_dcg(gains[order]) / ideal)
    return np.asarray(out)


def fold_masks(ex: Examples, *, n_folds: int = N_FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) boolean masks over the examples (module docstring)."""
    rng = np.random.default_rng(seed)
    groups = np.unique(ex.group)
    g_fold = dict(zip(groups.tolist(), rng.permutation(len(groups)) % n_folds))
    queries = np.unique(ex.qid)
    q_fold = dict(zip(queries.tolist(), rng.permutation(len(queries)) % n_folds))
    gf = np.array([g_fold[g] for g in ex.group.tolist()])
    qf = np.array([q_fold[q] for q in ex.qid.tolist()])
    return [((gf != k) & (qf != k), (gf == k) & (qf == k)) for k in range(n_folds)]


def _params(depth: int, eta: float, threads: int, seed: int) -> dict[str, Any]:
    return {
        "objective": "rank:ndcg", "eval_metric": "ndcg@10", "max_depth": depth, "eta": eta,
        "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 5, "tree_method": "hist",
        "lambdarank_pair_method": "topk", "lambdarank_num_pair_per_sample": 10,
        "nthread": threads, "seed": seed,
    }


def _fit(ex: Examples, mask: np.ndarray, config: tuple[int, float, int], threads: int, seed: int) -> xgb.Booster:
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(ex.qid[idx], kind="stable")]  # xgboost needs each query's rows contiguous
    d = xgb.DMatrix(ex.x[idx], label=ex.y[idx], qid=ex.qid[idx], feature_names=list(FEATURE_NAMES))
    depth, eta, n = config
    return xgb.train(_params(depth, eta, threads, seed), d, num_boost_round=n)


@dataclass(frozen=True)
class FitReport:
    chosen: tuple[int, float, int]
    cv: list[dict[str, Any]]  # per config: mean test NDCG@k of the ranker and of the hand scores
    importance: dict[str, float]  # feature → share of the total gain
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        depth, eta, n = self.chosen
        return {"chosen": {"max_depth": depth, "eta": eta, "n_estimators": n}, "cv": self.cv,
                "importance": self.importance, "counts": self.counts}


def select_and_fit(
    ex: Examples, *, grid: tuple[tuple[int, float, int], ...] = GRID, n_folds: int = N_FOLDS, threads: int = 2,
    seed: int = 0,
) -> tuple[LearnedRanker, FitReport]:
    """Pick the config of ``grid`` with the best CV NDCG@10, refit it on every example."""
    folds = fold_masks(ex, n_folds=n_folds, seed=seed)
    hand = {k: [] for k in NDCG_KS}
    for _, test in folds:
        for k in NDCG_KS:
            hand[k].append(ndcg_by_query(scores=ex.hand[test], y=ex.y[test], qid=ex.qid[test], k=k))
    cv = []
    for config in grid:
        ranked = {k: [] for k in NDCG_KS}
        for train, test in folds:
            booster = _fit(ex, train, config, threads, seed)
            s = booster.inplace_predict(ex.x[test])
            for k in NDCG_KS:
                ranked[k].append(ndcg_by_query(scores=s, y=ex.y[test], qid=ex.qid[test], k=k))
        row: dict[str, Any] = {"max_depth": config[0], "eta": config[1], "n_estimators": config[2]}
        for k in NDCG_KS:
            row[f"ranker_ndcg@{k}"] = round(float(np.mean(np.concatenate(ranked[k]))), 4)
            row[f"hand_ndcg@{k}"] = round(float(np.mean(np.concatenate(hand[k]))), 4)
            row[f"ranker_ndcg@{k}_folds"] = [round(float(np.mean(r)), 4) for r in ranked[k]]
        cv.append(row)
    best = max(range(len(grid)), key=lambda i: cv[i]["ranker_ndcg@10"])
    booster = _fit(ex, np.ones(len(ex.y), bool), grid[best], threads, seed)
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    importance = {f: round(gain.get(f, 0.0) / total, 4) for f in FEATURE_NAMES}
    importance = dict(sorted(importance.items(), key=lambda kv: -kv[1]))
    counts = {
        "pairs": int(len(ex.y)), "queries": int(len(np.unique(ex.qid))),
        "groups": int(len(np.unique(ex.group))), "positive_pairs": int((ex.y > 0).sum()),
        **{f"pairs_{k}": int((ex.kind == k).sum()) for k in np.unique(ex.kind).tolist()},
    }
    report = FitReport(chosen=grid[best], cv=cv, importance=importance, counts=counts)
    return LearnedRanker(booster=booster, info=report.as_dict()), report
