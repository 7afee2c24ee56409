"""The evaluation's view of a published store: the same Recommender the service uses."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.index.bundle import load_bundle
from pipelines.rank.recommender import Recommender, RecommendRequest


class BundleStoreHandle:
    """Implements ``pipelines.measure.run.StoreHandle`` over one version folder."""

    def __init__(self, folder: Path) -> None:
        self.bundle = load_bundle(Path(folder))
        self.recommender = Recommender(self.bundle)
        ids = self.bundle.tracks.get_column(S.TRACK_ID).to_list()
        self._row = {t: i for i, t in enumerate(ids)}

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
