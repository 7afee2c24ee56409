"""The learned ranker (LambdaMART over the ranking's features), trained on the store's shipped data."""

from collections.abc import Sequence

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.mood import stored_tag_priors
from assets.publish import serving_tracks
from assets.resources import StoreResource
from pipelines import schema as S
from pipelines.embed.sentence import EMBEDDING_DIM, embed_texts
from pipelines.heal.textdoc import add_text_docs
from pipelines.index.version import normalise_tracks
from pipelines.mood import labels as moodlabels
from pipelines.mood.lexicon import EMOBANK_FILE, MoodLexicon, resolve_open_file
from pipelines.mood.query import QueryMoodModel
from pipelines.mood.tags import scorer_for
from pipelines.mood.tracks import track_moods
from pipelines.rank.ranker_fit import select_and_fit
from pipelines.rank.ranker_training import (
    Examples,
    build_examples,
    held_out_view,
    labelled_pool,
    training_queries,
)
from pipelines.rank.understand import QueryLexicons, QueryReader, load_moodtheme_terms
from pipelines.store import DATA_DIR, StoreLayout, read_array, read_model

MIN_LABELLED = 200  # fewer labelled tracks (a crawl without the shipped data): no ranker
TEXT_CACHE = "ranker_text_cache"


class CachedEncoder:
    """MiniLM embeddings keyed by text, persisted in one store table (texts embedded once)."""

    def __init__(self, layout: StoreLayout) -> None:
        self.path = layout.table(TEXT_CACHE)
        self.cache: dict[str, np.ndarray] = {}
        if self.path.exists():
            t = pl.read_parquet(self.path)
            for text, vec in zip(t["text"].to_list(), t["vector"].to_list()):
                self.cache[text] = np.asarray(vec, np.float32)
        self.new = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            for t, v in zip(todo, embed_texts(todo)):
                self.cache[t] = v
            self.new += len(todo)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([self.cache[t] for t in texts])

    def save(self) -> None:
        from pipelines.store import write_table

        if self.new:
            write_table(pl.DataFrame({"text": list(self.cache), "vector": [v.tolist() for v in self.cache.values()]},
                                     schema={"text": pl.String, "vector": pl.List(pl.Float32)}), self.path)


class PredictedMoods:
    """A query-mood model whose predictions for known texts were computed in one batch."""

    def __init__(self, model: QueryMoodModel, texts: Sequence[str]) -> None:
        self.model = model
        # without embeddings the model runs its full head (the encoder's layer features too), as serving does
        self.known = dict(zip(texts, np.asarray(model.predict(list(texts)))))

    def predict(self, texts: Sequence[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        if all(t in self.known for t in texts):
            return np.stack([self.known[t] for t in texts])
        return self.model.predict(texts, embeddings=embeddings)


def ranker_examples(store: StoreResource) -> tuple[Examples | None, int]:
    """The training examples from the store's labelled tracks (None when there are fewer than
    MIN_LABELLED or no audio index) and the number of labelled tracks."""
    layout = store.layout()
    table, text_vectors = store.text_embeddings()
    tracks = normalise_tracks(serving_tracks(
        order=table, metadata=store.load("imputed_metadata"), moods=store.load("track_moods"),
        audio=store.load("audio_features_imputed"),
    ))
    n = tracks.height
    audio_vectors = np.zeros((n, 0), np.float32)
    if layout.index_file("audio").exists():
        vecs = read_array(layout.array("audio_vectors"))
        audio_vectors = np.zeros((n, vecs.shape[1]), np.float32)
        audio_vectors[read_array(layout.array("audio_ids"))] = vecs
    lexicon = MoodLexicon.from_files(data_dir=DATA_DIR)
    scorer = scorer_for(lexicon=lexicon, data_dir=DATA_DIR)
    mood_terms = load_moodtheme_terms()
    pool = labelled_pool(
        tracks=tracks, mood_terms=mood_terms, scorer=scorer, emopia=moodlabels.emopia_labels(data_dir=DATA_DIR),
        immich=moodlabels.immich_labels(data_dir=DATA_DIR, lexicon=lexicon),
    )
    if len(pool.rows) < MIN_LABELLED or audio_vectors.shape[1] == 0:
        return None, len(pool.rows)
    encoder = CachedEncoder(layout)
    text_model = QueryMoodModel.load(layout.model("query_mood"))
    priors, audio_model = stored_tag_priors(layout), read_model(layout.model("audio_mood"))
    music = store.load("music_tracks").select(S.TRACK_ID, S.TITLE, S.ARTIST, S.GENRE, S.DESCRIPTION, S.VIBE_TEXT)
    ids = tracks[S.TRACK_ID]

    def docs_of(rows: list[int], tags: list[list[str]]) -> list[str]:
        frame = pl.DataFrame({S.TRACK_ID: ids.gather(rows), S.TAGS: [", ".join(t) or None for t in tags]})
        return add_text_docs(frame.join(music, on=S.TRACK_ID, how="left")).get_column(S.TEXT_DOC).to_list()

    def moods_of(rows: list[int], docs: list[str], vectors: np.ndarray, tags: list[list[str]]) -> pl.DataFrame:
        # The same evidence as the track_moods asset, from the rows' held-out tags.
        tid = ids.gather(rows)
        held_tags = pl.DataFrame({S.TRACK_ID: tid, S.TAGS: [", ".join(t) or None for t in tags]})
        metadata = store.load("imputed_metadata")
        metadata = metadata.join(held_tags.rename({S.TAGS: "_held"}), on=S.TRACK_ID, how="left").with_columns(
            pl.when(pl.col(S.TRACK_ID).is_in(tid.implode())).then(pl.col("_held")).otherwise(pl.col(S.TAGS))
            .alias(S.TAGS)
        ).drop("_held")
        result = track_moods(
            text_table=pl.DataFrame({S.TRACK_ID: tid, S.TEXT_DOC: docs, "has_text": [bool(d) for d in docs]}),
            vectors=vectors, audio=store.load("audio_features_imputed"), tags=held_tags,
            audio_model=audio_model, text_model=text_model, scorer=scorer,
            metadata=metadata, priors=priors,
        )
        return pl.DataFrame({S.TRACK_ID: tid}).join(result.moods, on=S.TRACK_ID, how="left")

    held = held_out_view(tracks=tracks, text_vectors=np.asarray(text_vectors), pool=pool, docs_of=docs_of,
                         encoder=encoder, moods_of=moods_of)
    emobank = pl.read_csv(resolve_open_file(data_dir=DATA_DIR, relative=f"text/{EMOBANK_FILE}"))
    queries = training_queries(emobank=emobank, mood_terms=mood_terms, scorer=scorer)
    texts = queries["query"].to_list()
    encoder(texts)  # one batch into the cache; the reader then looks each query up
    encoder.save()
    reader = QueryReader(
        encoder=encoder, query_mood=PredictedMoods(text_model, texts), lexicon=lexicon,
        lexicons=QueryLexicons.from_tracks(held.tracks, mood_terms=mood_terms),
    )
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float64)
    examples = build_examples(
        held=held, audio_vectors=audio_vectors, pool=pool, queries=queries, reader=reader,
        has_audio=np.abs(audio_vectors).sum(axis=1) > 0, has_mood=~np.isnan(va).any(axis=1),
    )
    return examples, len(pool.rows)


@asset(
    group_name="rank",
    deps=["query_mood_model", "audio_mood_model", "tag_priors", "track_moods", "text_embeddings",
          "imputed_metadata", "audio_features_imputed", "audio_index", "music_tracks"],
    compute_kind="xgboost",
    code_version="1",
)
def learned_ranker(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """LambdaMART (xgboost ``rank:ndcg``) over the ranking's features, trained on the store's
    shipped labelled tracks (MTG-Jamendo mood/theme tags, EMOPIA train quadrants, immich moods)
    for EmoBank train sentences and mood words (``pipelines.rank.ranker_training``); the config is
    chosen by artist- and query-disjoint CV (``pipelines.rank.ranker_fit``). Published with the
    version; without enough labelled tracks no ranker is written and the hand weights rank.
    """
    layout = store.layout()
    examples, labelled = ranker_examples(store)
    if examples is None:
        layout.model("ranker").unlink(missing_ok=True)
        context.log.warning(f"{labelled} labelled tracks (or no audio index): no learned ranker")
        return MaterializeResult(metadata={"labelled_tracks": labelled, "trained": False})
    ranker, report = select_and_fit(examples)
    ranker.save(layout.model("ranker"))
    best = next(r for r in report.cv if (r["max_depth"], r["eta"], r["n_estimators"]) == report.chosen)
    return MaterializeResult(metadata={
        "trained": True,
        **{k: v for k, v in best.items() if not k.endswith("_folds")},
        **report.counts,
        "labelled_tracks": labelled,
        "cv": MetadataValue.json(report.cv),
        "feature_importance": MetadataValue.json(report.importance),
        "path": MetadataValue.path(str(layout.model("ranker"))),
    })
