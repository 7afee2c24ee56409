"""The audio side's word-mood reader, and the choice of how the audio model's priors read mood words.

:class:`WordMoodRegressor`: ridge heads from the MiniLM embedding of a word (alone as a text) to its
Glasgow valence and arousal, the penalty per axis chosen by word-held-out cross-validation; built
from the shipped norms and encoder only, never from a trained store model. :func:`choose_tag_priors`
scores the norms-only priors and those where the regressor reads some mood words on shipped
labelled audio (EMOPIA train, immich) and keeps the best.
"""

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import store
from pipelines.errors import InvalidInputError
from pipelines.mood.backbone_features import PRIOR_AROUSAL, PRIOR_VALENCE, TagPriorTable, backbone_features
from pipelines.mood.labels import AROUSAL_SIGN, VALENCE_SIGN, immich_labels
from pipelines.mood.lexicon import MoodLexicon, load_glasgow
from pipelines.mood.metrics import pearson_r
from pipelines.mood.priors import READER_SCOPES, TagPriors, hash_fold, tag_priors
from pipelines.schema import AROUSAL, TRACK_ID, VALENCE

ALPHAS: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)  # ridge penalties tried (unit-norm 384-d inputs)
CV_FOLDS = 5

Embed = Callable[[Sequence[str]], np.ndarray]


def _embed(words: Sequence[str]) -> np.ndarray:
    from pipelines.embed.sentence import embed_texts

    return embed_texts(words)


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ridge weights (dim, k) and intercepts (k,) of targets ``y`` (n, k) for each penalty (intercept
    unpenalised), from one eigendecomposition of the centred Gram matrix."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc = x - mx
    s, v = np.linalg.eigh(xc.T @ xc)
    proj = v.T @ (xc.T @ (y - my))
    out = []
    for alpha in alphas:
        w = v @ (proj / (s + alpha)[:, None])
        out.append((w, my - mx @ w))
    return out


@dataclass
class WordMoodRegressor:
    """Ridge heads (valence, arousal) over the sentence embedding of a single word."""

    coef: np.ndarray  # (dim, 2)
    intercept: np.ndarray  # (2,)
    alphas: tuple[float, float]  # chosen penalty per axis
    cv_r: tuple[float, float]  # held-out-word Pearson r per axis at the chosen penalties
    cv_table: dict[str, list[float]]  # penalty → [valence r, arousal r] over the folds
    n_words: int
    embed: Embed = field(default=_embed, repr=False)

    def read(self, words: Sequence[str]) -> np.ndarray:
        """(n, 3) valence, arousal in [-1, 1] and confidence max(|valence|, |arousal|) of each word
        (ridge estimates are shrunk towards the norms' mean, so uncertain words get little weight)."""
        if len(words) == 0:
            return np.zeros((0, 3))
        va = np.clip(np.asarray(self.embed(list(words)), dtype=np.float64) @ self.coef + self.intercept, -1.0, 1.0)
        return np.column_stack([va, np.abs(va).max(axis=1)])

    def summary(self) -> dict[str, object]:
        """The fitting facts, JSON-ready."""
        return {
            "words": self.n_words,
            "alpha": list(self.alphas),
            "cv_r": [round(r, 4) for r in self.cv_r],
            "cv_table": {k: [round(r, 4) for r in v] for k, v in self.cv_table.items()},
        }


def fit_word_mood_regressor(
    *,
    data_dir: Path = store.DATA_DIR,
    embed: Embed = _embed,
    alphas: Sequence[float] = ALPHAS,
    folds: int = CV_FOLDS,
    norms: dict[str, tuple[float, float]] | None = None,
) -> WordMoodRegressor:
    """Fit on the Glasgow norms (or ``norms``: word → (valence, arousal)); per axis the penalty with
    the highest held-out-word Pearson r over ``folds`` stable word folds."""
    norms = load_glasgow(data_dir=data_dir) if norms is None else norms
    words = sorted(norms)
    if len(words) < 2 * folds:
        raise InvalidInputError(f"the word regressor needs ≥ {2 * folds} normed words", field="norms")
    y = np.array([norms[w] for w in words], dtype=np.float64)
    x = np.asarray(embed(words), dtype=np.float64)
    fold = np.array([hash_fold(w, folds) for w in words])
    pred = np.zeros((len(alphas), *y.shape))
    for f in range(folds):
        train, test = fold != f, fold == f
        for i, (w, b) in enumerate(_ridge_path(x[train], y[train], alphas)):
            pred[i, test] = x[test] @ w + b
    table = {f"{a:g}": [float(np.nan_to_num(pearson_r(pred[i, :, j], y[:, j]))) for j in range(2)]
             for i, a in enumerate(alphas)}
    best = [max(alphas, key=lambda a, j=j: table[f"{a:g}"][j]) for j in range(2)]
    coef = np.zeros((x.shape[1], 2))
    intercept = np.zeros(2)
    for j in range(2):
        w, b = _ridge_path(x, y[:, j : j + 1], [best[j]])[0]
        coef[:, j], intercept[j] = w[:, 0], b[0]
    return WordMoodRegressor(
        coef=coef, intercept=intercept, alphas=(float(best[0]), float(best[1])),
        cv_r=(table[f"{best[0]:g}"][0], table[f"{best[1]:g}"][1]), cv_table=table, n_words=len(words),
        embed=embed,
    )


# Candidates of the audio model's co-occurrence priors: which mood words the regressor reads
# (``priors.READER_SCOPES``: "none" = the word norms only).
CANDIDATE_SCOPES: tuple[str, ...] = READER_SCOPES
CRITERIA: tuple[str, ...] = ("emopia_valence_r", "emopia_arousal_r", "immich_valence_r", "immich_arousal_r")


def prior_only_scores(priors: TagPriors, *, audio: pl.DataFrame, emopia: pl.DataFrame, immich: pl.DataFrame) -> dict:
    """Pearson r of the prior-only audio estimator (backbone tag probabilities × ``priors``) against
    shipped labels: EMOPIA clips' valence/arousal signs (``emopia``: track_id, valence_sign,
    arousal_sign) and the immich clips' mood-word targets (``immich``: track_id, valence, arousal)."""
    prior = backbone_features(audio, TagPriorTable.from_priors(priors))
    out: dict[str, float] = {}
    sets = (("emopia", emopia, (VALENCE_SIGN, AROUSAL_SIGN)), ("immich", immich, (VALENCE, AROUSAL)))
    for name, labels, cols in sets:
        rows = prior.join(labels.select(TRACK_ID, *cols), on=TRACK_ID, how="inner").drop_nulls().drop_nans()
        for axis, pred, col in (("valence", PRIOR_VALENCE, cols[0]), ("arousal", PRIOR_AROUSAL, cols[1])):
            r = pearson_r(rows.get_column(pred).to_numpy(), rows.get_column(col).to_numpy())
            out[f"{name}_{axis}_r"] = round(float(np.nan_to_num(r)), 4)
        out[f"{name}_clips"] = rows.height
    return out


def choose_tag_priors(
    *,
    lexicon: MoodLexicon,
    audio: pl.DataFrame,
    emopia: pl.DataFrame,
    data_dir: Path = store.DATA_DIR,
    regressor: WordMoodRegressor | None = None,
    scopes: Sequence[str] = CANDIDATE_SCOPES,
) -> TagPriors:
    """The co-occurrence priors of the audio model, their word-mood reading chosen on shipped data.

    Each candidate (``scopes``: the word norms only, or the norms with the word regressor reading
    some mood words) is scored by :func:`prior_only_scores` on ``audio`` (track_id + backbone
    columns) against ``emopia`` (the EMOPIA *train* signs) and every immich clip (its mood word's
    norms, else the regressor's reading); the chosen one has the highest mean of the four r
    (``CRITERIA``), the first listed on a tie. Returns its priors with ``selection``: the table,
    the choice and the regressor's word-held-out CV."""
    regressor = fit_word_mood_regressor(data_dir=data_dir) if regressor is None else regressor
    immich = immich_labels(data_dir=data_dir, lexicon=lexicon, reader=regressor.read)
    if not scopes:
        raise InvalidInputError("no candidate scope", field="scopes")
    table: list[dict] = []
    by_scope: dict[str, TagPriors] = {}
    for scope in scopes:
        by_scope[scope] = priors = tag_priors(lexicon=lexicon, data_dir=data_dir, reader=regressor.read, scope=scope)
        scores = prior_only_scores(priors, audio=audio, emopia=emopia, immich=immich)
        table.append({"candidate": scope, **scores, "mean_r": round(float(np.mean([scores[c] for c in CRITERIA])), 4),
                      "prior_cv_r": [round(r, 4) for r in priors.reliability]})
    best = max(table, key=lambda row: row["mean_r"])  # max keeps the first of equal rows
    selection = {"chosen": best["candidate"], "table": table, "word_regressor": regressor.summary()}
    return dataclasses.replace(by_scope[best["candidate"]], selection=selection)


def selection_markdown(selection: dict) -> str:
    """Markdown table of a ``TagPriors.selection``: one row per candidate, the chosen one marked."""
    head = "| reader scope | " + " | ".join(CRITERIA) + " | mean r | MTG prior CV r (v, a) |"
    lines = [head, "|" + "---|" * (len(CRITERIA) + 3)]
    for row in selection.get("table", []):
        mark = " ✔" if row["candidate"] == selection.get("chosen") else ""
        cells = " | ".join(f"{row[c]:.3f}" for c in CRITERIA)
        lines.append(f"| {row['candidate']}{mark} | {cells} | {row['mean_r']:.3f} | {row['prior_cv_r']} |")
    reg = selection.get("word_regressor", {})
    if reg:
        lines.append(f"\nword regressor: {reg['words']} Glasgow words, alpha {reg['alpha']}, "
                     f"held-out-word CV r {reg['cv_r']}")
    return "\n".join(lines)
