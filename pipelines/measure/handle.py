"""The evaluation's view of a published store: the same Recommender the service uses."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.audio.complete import EXTRACTED
from pipelines.index.bundle import load_bundle
from pipelines.rank.recommender import Ranker, Recommender, RecommendRequest
from pipelines.rank.understand import MoodPredictor
from pipelines.store import StoreLayout

AUDIO_FEATURES_TABLE = "audio_features"


def layout_of_version(folder: Path) -> StoreLayout | None:
    """The store a published version folder belongs to, or None when it is not inside one."""
    folder = Path(folder).resolve()
    layout = StoreLayout(folder.parent.parent)
    return layout if layout.version_dir(folder.name) == folder else None


class BundleStoreHandle:
    """Implements ``pipelines.measure.run.StoreHandle`` and ``AudioStoreHandle`` over one version
    folder (the audio features are read from the store the version was published from).

    ``query_mood``: the query mood model (default: the one published in the version);
    ``ranker``: the learned ranker of ``mode="full"`` (default: the one published in the version,
    if any; without one the hand weights rank).
    """

    def __init__(
        self, folder: Path, *, query_mood: MoodPredictor | None = None, ranker: Ranker | None = None
    ) -> None:
        self.bundle = load_bundle(Path(folder))
        if ranker is None:
            from pipelines.rank.learned import ranker_for_bundle  # xgboost only when evaluating

            ranker = ranker_for_bundle(self.bundle)
        self.recommender = Recommender(self.bundle, query_mood=query_mood, ranker=ranker)
        ids = self.bundle.tracks.get_column(S.TRACK_ID).to_list()
        self._row = {t: i for i, t in enumerate(ids)}
        self._layout = layout_of_version(Path(folder))

    def close(self) -> None:
        self.recommender.close()

    def track_moods(self) -> pl.DataFrame:
        return self.bundle.tracks.select(S.TRACK_ID, S.VALENCE, S.AROUSAL, S.MOOD_SOURCE)

    def query_moods(self, *, texts: Sequence[str]) -> np.ndarray:
        pred = self.recommender.query_mood.predict(list(texts))
        return np.asarray(pred, dtype=np.float64)[:, :2]

    def recommend(self, *, query: str, mode: str, top_k: int) -> list[str]:
        result = self.recommender.recommend(RecommendRequest(query=query, top_k=top_k, mode=mode))
        return [r.track_id for r in result.results]

    def text_vectors(self, *, track_ids: Sequence[str]) -> np.ndarray:
        return self.bundle.text.rows(np.asarray([self._row[t] for t in track_ids], dtype=np.int64))

    def artists(self, *, track_ids: Sequence[str]) -> list[str | None]:
        artists = self.bundle.tracks.get_column(S.ARTIST).to_list()
        return [artists[self._row[t]] for t in track_ids]

    def extracted_audio(self) -> pl.DataFrame:
        """The store's extracted audio features (librosa columns and any backbone list columns) of the
        served tracks whose audio was extracted, not imputed; empty when the store has none."""
        path = None if self._layout is None else self._layout.table(AUDIO_FEATURES_TABLE)
        if path is None or not path.exists():
            return pl.DataFrame({S.TRACK_ID: []}, schema={S.TRACK_ID: pl.String})
        served = self.bundle.tracks.filter(pl.col(S.AUDIO_SOURCE) == EXTRACTED).get_column(S.TRACK_ID)
        feats = pl.read_parquet(path)
        if S.AUDIO_ERROR in feats.columns:
            feats = feats.filter(pl.col(S.AUDIO_ERROR).is_null())
        return feats.filter(pl.col(S.TRACK_ID).is_in(served.implode())).unique(S.TRACK_ID, keep="first")

    def audio_dims(self) -> int | None:
        return None if self.bundle.audio is None else self.bundle.audio.dim

    def audio_neighbours(self, *, track_ids: Sequence[str], k: int) -> dict[str, list[str]]:
        """Each track's k nearest others among ``track_ids`` by the service's audio retrieval for a
        seed: the seed's audio vector as the query of the audio index (``Retriever.search``)."""
        b, retriever = self.bundle, self.recommender.retriever
        rows = self.recommender.rows_of(list(track_ids))
        ok = rows >= 0
        ok[ok] = b.has_audio[rows[ok]]
        allow = np.sort(rows[ok])
        ids = b.tracks.get_column(S.TRACK_ID)
        out: dict[str, list[str]] = {}
        for track_id, row in zip(track_ids, rows):
            if row < 0 or not b.has_audio[row]:
                continue
            query = retriever.seed_audio_vector(np.asarray([row], dtype=np.int64))
            if query is None:
                continue
            hits, _ = retriever.search(b.audio, query, k + 1, allow)
            out[track_id] = ids.gather([int(h) for h in hits if h != row][:k]).to_list()
        return out
