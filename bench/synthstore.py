"""Synthetic serving stores of N tracks for load tests, shaped like the real open data.

Nothing here pretends to be a real catalogue: the manifest says ``synthetic: true`` with the seed
and the generation parameters. Every track derives from real open data (``data/``): a demo-crawl
prototype's metadata, its MiniLM vector plus noise, its lexicon mood plus noise, audio vectors
sampled from a mixture fitted on the bundled clips' librosa features (see :func:`build_synth_store`).
Stores are reused by N while their generation key is unchanged.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines import store
from pipelines.index import bundle as B
from pipelines.index.version import write_version_chunked
from pipelines.mood.query import MODEL_VERSION as QUERY_MOOD_VERSION

TEXT_NOISE = 0.55  # noise norm relative to the unit prototype vector (cos ≈ 0.88)
AUDIO_DIMS_NOTE = "standardised librosa FEATURE_COLUMNS"
GENRE_NULL = 0.75
TAGS_NULL = 0.72
ARTIST_ZIPF_S = 1.1
MOOD_NOISE = 0.12
MOOD_NULL = 0.04
AUDIO_RATE = 0.6  # share of tracks with an audio vector
PLAYS_NULL = 0.2
URL_STATUS_MIX: dict[str, float] = {
    S.VALID: 0.66, S.UNKNOWN: 0.14, S.MOVED: 0.04, S.REQUIRES_AUTH: 0.02, S.BLOCKED: 0.02, S.DEAD: 0.12,
}
AUDIO_PCA_FIT = 20_000  # mixture draws the synthetic audio PCA is fitted on
SYNTH_VERSION = "synth-v3"  # v3: 64-d PCA audio space (v2: 76-d standardised features)


@dataclass(frozen=True)
class SynthParams:
    """Generation parameters (part of the reuse key)."""

    n_tracks: int
    seed: int = 0
    prototypes: int = 4000
    audio_clips: int = 42
    mood_model_rows: int = 3000  # EmoBank rows (plus every Glasgow word) for the query-mood model
    factory: str | None = None
    publish_vectors: bool | None = None  # also write text/audio .npy (default: only below 50k rows)
    chunk: int = 50_000

    def key(self) -> str:
        d = asdict(self)
        d.pop("chunk")
        d["generator"] = SYNTH_VERSION
        d["query_mood_model"] = QUERY_MOOD_VERSION  # a cached store with an older model file is rebuilt
        return json.dumps(d, sort_keys=True)


def default_cache_dir() -> Path:
    """``MOODSCAPE_SYNTH_CACHE`` or ``<MOODSCAPE_HOME>/synth``."""
    return Path(os.environ.get("MOODSCAPE_SYNTH_CACHE") or store.home() / "synth").resolve()


BUILD_INFO = "build.json"  # {"build_s", "key", "version"} in the store root


def store_dir(*, cache: Path, n_tracks: int) -> Path:
    """The store root of ``<cache>/synth-<N>`` (that folder is a ``MOODSCAPE_HOME``)."""
    return store.StoreLayout.under_home(Path(cache) / f"synth-{n_tracks}").root


# ------------------------------------------------------------------------------------ real inputs
def load_prototypes(*, cache: Path, count: int, seed: int, progress: bool = True) -> tuple[pl.DataFrame, np.ndarray]:
    """``count`` real demo-crawl rows (with a text doc) and their (count, 384) MiniLM vectors (cached)."""
    from pipelines.embed.sentence import embed_texts
    from pipelines.heal import democorpus
    from pipelines.heal.textdoc import add_text_docs

    tag = f"prototypes-{count}-{seed}"
    pq, npy = Path(cache) / f"{tag}.parquet", Path(cache) / f"{tag}.npy"
    if pq.exists() and npy.exists():
        return pl.read_parquet(pq), np.load(npy)
    crawl = add_text_docs(democorpus.build_demo_crawl(data_dir=store.DATA_DIR))
    crawl = crawl.filter(pl.col(S.TEXT_DOC).str.len_chars() > 0)
    # Every row that has a title (the few real titled clips) plus a seeded sample of the rest.
    titled = crawl.filter(pl.col(S.TITLE).is_not_null())
    rest = crawl.filter(pl.col(S.TITLE).is_null())
    take = max(0, min(count - titled.height, rest.height))
    protos = pl.concat([titled, rest.sample(n=take, seed=seed, shuffle=True)]).head(count)
    vectors = embed_texts(protos[S.TEXT_DOC].to_list(), progress=progress)
    Path(cache).mkdir(parents=True, exist_ok=True)
    store.write_table(protos, pq)
    store.write_array(vectors, npy)
    return protos, vectors


def load_audio_features(*, cache: Path, clips: int, progress: bool = True) -> np.ndarray:
    """(m, F) real librosa feature vectors of up to ``clips`` bundled music clips (cached)."""
    path = Path(cache) / f"audio-features-{clips}.npy"
    if path.exists():
        return np.load(path)
    from pipelines.audio import extract
    from pipelines.audio import features as audio

    files = sorted((store.DATA_DIR / "audio" / "immich" / "tracks").rglob("*.ogg"))
    files += sorted((store.DATA_DIR / "audio" / "librosa").glob("*.ogg"))
    files = files[:clips]
    frame = extract.extract_many(items=[(f.stem, str(f)) for f in files], workers=1, progress=progress)
    feats = frame.select(audio.FEATURE_COLUMNS).drop_nulls().to_numpy().astype(np.float64)
    if feats.shape[0] < 2:
        raise RuntimeError("fewer than 2 real audio clips could be analysed")
    store.write_array(feats, path)
    return feats


def query_mood_model(*, cache: Path, rows: int, progress: bool = True) -> Path:
    """A real query-mood model (Glasgow words + ``rows`` EmoBank train rows), trained once, cached."""
    path = Path(cache) / f"query_mood-{max(rows, 200)}-v{QUERY_MOOD_VERSION}.joblib"
    if path.exists():
        return path
    from pipelines.mood import query_training as Q

    gl = Q.load_glasgow_words(data_dir=store.DATA_DIR)
    eb = Q.load_emobank(data_dir=store.DATA_DIR, split="train")
    rows = max(rows, 200)  # the model's EmoBank scale needs EmoBank rows
    keep = np.sort(np.random.default_rng(0).choice(len(eb.texts), size=min(rows, len(eb.texts)), replace=False))
    train = Q.TrainingData(
        texts=gl.texts + [eb.texts[i] for i in keep],
        targets=np.vstack([gl.targets, eb.targets[keep]]),
        sources=np.concatenate([gl.sources, eb.sources[keep]]),
    )
    dev = Q.load_emobank(data_dir=store.DATA_DIR, split="dev")
    dev = Q.TrainingData(texts=dev.texts[:300], targets=dev.targets[:300], sources=dev.sources[:300])
    model, _ = Q.train_query_mood_model(
        train=train, dev=dev, **({"alphas": (10.0,)} if rows < 1000 else {}), progress=progress,
    )
    return model.save(path)


# ------------------------------------------------------------------------------------ generation
def zipf_choice(*, rng: np.random.Generator, n_items: int, size: int, s: float = ARTIST_ZIPF_S) -> np.ndarray:
    """(size,) int indices into ``n_items`` with P(rank r) ∝ 1/r^s."""
    w = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** s
    return rng.choice(n_items, size=size, p=w / w.sum())


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass
class _Plan:
    proto_idx: np.ndarray  # (n,) prototype row of each track
    has_audio: np.ndarray  # (n,) bool
    audio_comp: np.ndarray  # (n,) mixture component of each track


class SynthSource:
    """Deterministic per-chunk vector generator (so vectors can be produced twice without storing them)."""

    def __init__(self, *, params: SynthParams, proto_vectors: np.ndarray, audio_feats: np.ndarray, plan: _Plan) -> None:
        from sklearn.mixture import GaussianMixture

        self.params = params
        self.proto_vectors = proto_vectors.astype(np.float32)
        mu, sd = audio_feats.mean(0), audio_feats.std(0) + 1e-9
        z = (audio_feats - mu) / sd
        k = int(max(1, min(4, len(z) // 4)))
        self.gmm = GaussianMixture(n_components=k, covariance_type="diag", random_state=params.seed).fit(z)
        self.plan = plan
        from sklearn.decomposition import PCA

        from pipelines.audio.space import TARGET_DIMS

        draws, _ = self.gmm.sample(AUDIO_PCA_FIT)
        dims = min(TARGET_DIMS, z.shape[1])
        self.pca = PCA(n_components=dims, random_state=params.seed).fit(draws)
        self.audio_dim = int(dims)

    def text(self, start: int, stop: int) -> np.ndarray:
        """(stop-start, 384) float32 unit text vectors of rows start..stop-1."""
        rng = np.random.default_rng([self.params.seed, 1, start])
        base = self.proto_vectors[self.plan.proto_idx[start:stop]]
        noise = rng.standard_normal(base.shape, dtype=np.float32) * (TEXT_NOISE / np.sqrt(base.shape[1]))
        return _unit(base + noise)

    def audio(self, start: int, stop: int) -> np.ndarray:
        """(stop-start, audio_dim) float32 unit audio vectors; zero rows where a track has no audio."""
        rng = np.random.default_rng([self.params.seed, 2, start])
        comp = self.plan.audio_comp[start:stop]
        mean = self.gmm.means_[comp]
        std = np.sqrt(self.gmm.covariances_[comp])
        x = self.pca.transform(mean + std * rng.standard_normal(mean.shape))
        x = _unit(x.astype(np.float32))
        x[~self.plan.has_audio[start:stop]] = 0.0
        return x


def _tracks(
    *, params: SynthParams, protos: pl.DataFrame, artists: list[str], rng: np.random.Generator,
) -> tuple[pl.DataFrame, _Plan]:
    from pipelines.heal.textdoc import split_tags
    from pipelines.mood.lexicon import MoodLexicon

    n = params.n_tracks
    p_idx = rng.integers(0, protos.height, size=n)
    lex = MoodLexicon.from_files()
    scores = [lex.score(t) for t in protos[S.TEXT_DOC].to_list()]
    p_va = np.array([[s.valence, s.arousal] for s in scores], dtype=np.float32)
    p_cov = np.array([s.coverage for s in scores], dtype=np.float32)

    p_artist_known = protos[S.ARTIST].is_not_null().to_numpy()
    artist_pick = zipf_choice(rng=rng, n_items=len(artists), size=n)
    artist = np.array(artists, dtype=object)[artist_pick]
    artist[~p_artist_known[p_idx]] = None

    p_genre = np.array(protos[S.GENRE].to_list(), dtype=object)
    genre = p_genre[p_idx]
    genre[rng.random(n) < GENRE_NULL] = None
    p_tags = [split_tags(t) or None for t in protos[S.TAGS].to_list()]
    tags_null = rng.random(n) < TAGS_NULL
    tags = [None if tags_null[i] else p_tags[j] for i, j in enumerate(p_idx)]

    va = np.clip(p_va[p_idx] + rng.normal(0, MOOD_NOISE, size=(n, 2)), -1, 1).astype(np.float32)
    has_audio = rng.random(n) < AUDIO_RATE
    conf = np.clip(0.35 + 0.5 * p_cov[p_idx] + 0.25 * has_audio + rng.normal(0, 0.05, n), 0.05, 1.0)
    mood_null = rng.random(n) < MOOD_NULL
    va[mood_null] = np.nan
    statuses = list(URL_STATUS_MIX)
    status = np.array(statuses, dtype=object)[rng.choice(len(statuses), size=n, p=list(URL_STATUS_MIX.values()))]
    plays = np.round(rng.lognormal(mean=6.0, sigma=2.5, size=n)).astype(np.int64)
    plays_null = rng.random(n) < PLAYS_NULL
    ids = [f"synth:{params.seed}:{i:08d}" for i in range(n)]
    p_url = protos[S.PERMALINK_URL].to_list()
    url = [None if p_url[j] is None else f"{p_url[j]}#synth-{i}" for i, j in enumerate(p_idx)]
    p_title = np.array(protos[S.TITLE].to_list(), dtype=object)
    tracks = pl.DataFrame({
        S.TRACK_ID: ids,
        S.TITLE: pl.Series(p_title[p_idx].tolist(), dtype=pl.String),
        S.ARTIST: pl.Series(artist.tolist(), dtype=pl.String),
        S.YEAR: pl.Series([None] * n, dtype=pl.Int32),
        S.GENRE: pl.Series(genre.tolist(), dtype=pl.String),
        S.TAGS: pl.Series(tags, dtype=pl.List(pl.String)),
        S.PERMALINK_URL: pl.Series(url, dtype=pl.String),
        S.URL_STATUS: pl.Series(status.tolist(), dtype=pl.String),
        S.PLAYBACK_COUNT: pl.Series(np.where(plays_null, None, plays).tolist(), dtype=pl.Int64),
        S.VALENCE: pl.Series(va[:, 0]).fill_nan(None), S.AROUSAL: pl.Series(va[:, 1]).fill_nan(None),
        S.MOOD_SOURCE: pl.Series(np.where(mood_null, None, np.where(has_audio, "fused", "text")).tolist(),
                                 dtype=pl.String),
        S.MOOD_CONFIDENCE: pl.Series(np.where(mood_null, np.nan, conf).astype(np.float32)).fill_nan(None),
        S.AUDIO_SOURCE: pl.Series(np.where(has_audio, "extracted", "none").tolist(), dtype=pl.String),
        S.TEXT_DOC: pl.Series([None] * n, dtype=pl.String),  # the vectors carry the text; saves memory
    })
    plan = _Plan(proto_idx=p_idx, has_audio=has_audio, audio_comp=np.zeros(n, dtype=np.int64))
    return tracks, plan


def build_synth_store(*, params: SynthParams, cache: Path | None = None, progress: bool = True) -> Path:
    """Build (or reuse) ``<cache>/synth-<N>`` and return its store root (with a published version).

    Reused when the published version was built with the same generation key. What derives from
    real data (``data/``, see ``data/NOTICE.md``):

    - **prototypes**: a seeded sample of the demo crawl (MusicCaps + MTG-Jamendo + librosa/immich
      rows); each synthetic track copies one prototype's title/genre/tags/url.
    - **text vectors**: the prototype's real MiniLM embedding plus isotropic Gaussian noise
      (cosine to the prototype ≈ ``1/sqrt(1+TEXT_NOISE²)``), re-normalised.
    - **audio vectors**: a diagonal Gaussian mixture fitted on the standardised librosa features
      of the bundled clips, sampled and projected like the real ``audio_index`` asset (PCA to
      ``audio.space.TARGET_DIMS`` dimensions, fitted on ``AUDIO_PCA_FIT`` draws, then L2-normalised).
    - **moods**: the prototype's lexicon mood (Glasgow/VADER ratings of its text) plus noise.
    - **artists**: real artist names of the open data, drawn Zipf-skewed; null where the
      prototype has none. Genre/tags nulled at GENRE_NULL/TAGS_NULL; url_status from URL_STATUS_MIX.
    """
    import time

    t0 = time.perf_counter()
    cache = Path(cache or default_cache_dir())
    root = store_dir(cache=cache, n_tracks=params.n_tracks)
    layout = store.StoreLayout(root)
    folder = layout.current_version_dir()
    if folder is not None and (root / BUILD_INFO).exists():
        try:
            info = json.loads((root / BUILD_INFO).read_text())
            if info.get("key") == params.key() and (folder / B.MANIFEST_FILE).exists():
                return root
        except (FileNotFoundError, json.JSONDecodeError):
            pass
    cache.mkdir(parents=True, exist_ok=True)
    protos, proto_vectors = load_prototypes(cache=cache, count=params.prototypes, seed=params.seed, progress=progress)
    audio_feats = load_audio_features(cache=cache, clips=params.audio_clips, progress=progress)
    model_path = query_mood_model(cache=cache, rows=params.mood_model_rows, progress=progress)
    from pipelines.heal import democorpus

    real_artists = sorted(set(
        democorpus.jamendo_rows(data_dir=store.DATA_DIR)[S.ARTIST].drop_nulls().to_list()
        + protos[S.ARTIST].drop_nulls().to_list()
    ))
    rng = np.random.default_rng(params.seed)
    rng.shuffle(real_artists)  # which artist is the most prolific is a seeded draw
    tracks, plan = _tracks(params=params, protos=protos, artists=real_artists, rng=rng)
    source = SynthSource(params=params, proto_vectors=proto_vectors, audio_feats=audio_feats, plan=plan)
    plan.audio_comp = rng.choice(len(source.gmm.weights_), size=params.n_tracks, p=source.gmm.weights_)
    version = f"{SYNTH_VERSION}-{params.n_tracks}-s{params.seed}"
    write_version_chunked(
        folder=layout.version_dir(version), tracks=tracks, text_chunk=source.text, audio_chunk=source.audio,
        audio_dim=source.audio_dim, query_mood_model_path=model_path, factory=params.factory,
        chunk=params.chunk, progress=progress, publish_vectors=params.publish_vectors,
        extra_manifest={"synthetic": {
            "synthetic": True, "seed": params.seed, "key": params.key(), "params": asdict(params),
            "derived_from": "data/ (democorpus prototypes, MiniLM, librosa features of bundled clips, Glasgow/VADER)",
            "text_noise": TEXT_NOISE, "genre_null": GENRE_NULL, "tags_null": TAGS_NULL,
            "artist_zipf_s": ARTIST_ZIPF_S, "audio_rate": AUDIO_RATE, "url_status_mix": URL_STATUS_MIX,
        }},
    )
    layout.publish(version)
    store.write_json({"build_s": time.perf_counter() - t0, "key": params.key(), "version": version}, root / BUILD_INFO)
    return root


def current_folder(root: Path) -> Path:
    """The published version folder of the store at ``root``."""
    folder = store.StoreLayout(Path(root)).current_version_dir()
    if folder is None:
        raise FileNotFoundError(f"no published version under {root}")
    return folder


def synth_summary(tracks: pl.DataFrame) -> dict[str, Any]:
    """Null rates and artist skew of a tracks table (for the manifest, tests, reports)."""
    n = max(1, tracks.height)
    counts = tracks[S.ARTIST].drop_nulls().value_counts(sort=True)["count"].to_numpy()
    return {
        "genre_null": tracks[S.GENRE].null_count() / n,
        "tags_null": tracks[S.TAGS].null_count() / n,
        "artist_null": tracks[S.ARTIST].null_count() / n,
        "top1pct_artist_share": float(counts[: max(1, len(counts) // 100)].sum() / max(1, counts.sum())),
        "dead": float((tracks[S.URL_STATUS] == S.DEAD).sum() / n),
    }
