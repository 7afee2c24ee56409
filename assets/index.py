"""FAISS indices (text, audio, mood) with id maps, and the recall checks that gate publication."""

import joblib
import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.resources import StoreResource
from pipelines import schema as S
from pipelines.audio.complete import EXTRACTED
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.audio.space import BACKBONE_EMBEDDINGS, fit_audio_space, stack_embeddings
from pipelines.index.build import (
    VectorSet,
    build_index,
    index_factory_string,
    load_index,
    mood_factory,
    save_index,
)
from pipelines.index.check import tie_aware_recall
from pipelines.store import StoreLayout, atomic_path, read_array, write_array

RECALL_K = 10
RECALL_SAMPLE = 200
RECALL_THRESHOLD = 0.95


def _write(layout: StoreLayout, name: str, vectors: VectorSet, metric: str) -> MaterializeResult:
    factory = mood_factory(n=len(vectors)) if name == "mood" else None  # None: size-adaptive
    index = build_index(vectors=vectors, metric=metric, factory=factory)
    save_index(index=index, path=layout.index_file(name))
    write_array(vectors.vectors, layout.array(f"{name}_vectors"))
    write_array(vectors.ids, layout.array(f"{name}_ids"))
    return MaterializeResult(
        metadata={
            "ntotal": int(index.ntotal),
            "dims": vectors.dim,
            "metric": metric,
            "factory": index_factory_string(index),
            "path": MetadataValue.path(str(layout.index_file(name))),
        }
    )


def _recall(layout: StoreLayout, name: str) -> AssetCheckResult:
    if name == "audio" and not layout.index_file("audio").exists():
        return AssetCheckResult(passed=True, metadata={"note": "no audio index for this crawl (no extracted audio)"})
    index = load_index(path=layout.index_file(name), mmap=False)
    vectors = VectorSet(
        ids=read_array(layout.array(f"{name}_ids")), vectors=read_array(layout.array(f"{name}_vectors"))
    )
    if len(vectors) == 0:
        # Nothing indexed (e.g. a crawl with no text at all): nothing can be missed either.
        return AssetCheckResult(
            passed=int(index.ntotal) == 0, metadata={"note": "empty index", "ntotal": int(index.ntotal)}
        )
    rng = np.random.default_rng(0)
    sample = vectors.vectors[rng.choice(len(vectors), size=min(RECALL_SAMPLE, len(vectors)), replace=False)]
    recall = tie_aware_recall(index=index, vectors=vectors, queries=sample, k=min(RECALL_K, len(vectors)))
    return AssetCheckResult(
        passed=recall >= RECALL_THRESHOLD,
        metadata={"recall_at_k": round(recall, 4), "k": RECALL_K, "threshold": RECALL_THRESHOLD, "sample": len(sample)},
    )


@asset(group_name="index", deps=["text_embeddings"], compute_kind="faiss", code_version="1")
def text_index(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """Inner-product FAISS index over the 384-d MiniLM vectors of tracks that have text (exact below 50k)."""
    table, vectors = store.text_embeddings()
    rows = np.where(table.get_column("has_text").to_numpy())[0]
    return _write(store.layout(), "text", VectorSet(ids=rows, vectors=vectors[rows]), "ip")


def _embeddings(feats: pl.DataFrame) -> np.ndarray | None:
    """(n, E) backbone embeddings of the rows (NaN rows where the track has no analysed recording);
    None when the table has no backbone columns."""
    cols = [c for c in BACKBONE_EMBEDDINGS if c in feats.columns]
    if not cols:
        return None
    return stack_embeddings([feats.get_column(c).to_list() for c in cols])


@asset(group_name="index", deps=["audio_features_imputed", "text_embeddings"], compute_kind="faiss", code_version="1")
def audio_index(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """Inner-product index over the audio space (``pipelines.audio.space``): the backbone embedding
    of each analysed recording and the librosa vector, each standardised → PCA ≤64-d → L2-norm,
    weighted. Fitted on extracted audio only; imputed librosa vectors are projected into it and,
    having no recording, match through their librosa block alone.
    """
    layout = store.layout()
    table = store.load("text_embeddings")
    row_of = {t: i for i, t in enumerate(table.get_column(S.TRACK_ID).to_list())}
    feats = store.load("audio_features_imputed").filter(pl.col(S.AUDIO_SOURCE) != "none")
    feats = feats.filter(pl.col(S.TRACK_ID).is_in(list(row_of)))
    extracted = feats.filter(pl.col(S.AUDIO_SOURCE) == EXTRACTED)
    if extracted.height < 2:
        # A crawl with no (or one) decodable audio file has no audio space to fit: publish no
        # audio index rather than one fitted on imputed guesses. Scoring then uses text and mood.
        for stale in (
            layout.index_file("audio"),
            layout.audio_space_file,
            layout.array("audio_vectors"),
            layout.array("audio_ids"),
        ):
            stale.unlink(missing_ok=True)
        context.log.warning(f"only {extracted.height} tracks with extracted audio: no audio index")
        return MaterializeResult(metadata={"ntotal": 0, "reason": "fewer than 2 tracks with extracted audio"})
    embeddings = _embeddings(feats)
    is_extracted = (feats.get_column(S.AUDIO_SOURCE) == EXTRACTED).to_numpy()
    space = fit_audio_space(
        features=extracted.select(FEATURE_COLUMNS).to_numpy(),
        embeddings=None if embeddings is None else embeddings[is_extracted],
    )
    with atomic_path(layout.audio_space_file, ".joblib") as tmp:
        joblib.dump(space, tmp)
    ids = np.array([row_of[t] for t in feats.get_column(S.TRACK_ID).to_list()], dtype=np.int64)
    vectors = space.transform(feats.select(FEATURE_COLUMNS).to_numpy(), embeddings)
    result = _write(layout, "audio", VectorSet(ids=ids, vectors=vectors), "ip")
    result.metadata["blocks"] = MetadataValue.json(
        {n: {"dims": b.dims, "weight": round(space.weight(n), 4)} for n, b in space.blocks.items()}
    )
    result.metadata["pca_explained_variance"] = MetadataValue.json(space.explained_variance)
    result.metadata["fitted_on_extracted"] = extracted.height
    result.metadata["with_backbone_embedding"] = (
        0 if embeddings is None else int(np.isfinite(embeddings).all(axis=1).sum())
    )
    return result


@asset(group_name="index", deps=["track_moods", "text_embeddings"], compute_kind="faiss", code_version="1")
def mood_index(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """L2 index over every track's (valence, arousal), in the row order of the text embeddings."""
    table = store.load("text_embeddings")
    moods = pl.DataFrame({S.TRACK_ID: table.get_column(S.TRACK_ID)}).join(
        store.load("track_moods"), on=S.TRACK_ID, how="left"
    )
    vecs = (
        moods.select(pl.col(S.VALENCE).fill_null(0.0), pl.col(S.AROUSAL).fill_null(0.0)).to_numpy().astype(np.float32)
    )
    return _write(store.layout(), "mood", VectorSet(ids=np.arange(len(vecs)), vectors=vecs), "l2")


@asset_check(asset="text_index", blocking=True, description="recall@10 of the text index vs exact search on a sample")
def text_index_recall(store: StoreResource) -> AssetCheckResult:
    return _recall(store.layout(), "text")


@asset_check(asset="audio_index", blocking=True, description="recall@10 of the audio index vs exact search on a sample")
def audio_index_recall(store: StoreResource) -> AssetCheckResult:
    return _recall(store.layout(), "audio")


@asset_check(asset="mood_index", blocking=True, description="recall@10 of the mood index vs exact search on a sample")
def mood_index_recall(store: StoreResource) -> AssetCheckResult:
    return _recall(store.layout(), "mood")
