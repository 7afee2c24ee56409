"""Models that do not depend on the crawl are reused by fingerprint: a crawl rebuild does not retrain
them; a new code version or new training data does."""

import joblib
import polars as pl
import pytest
from dagster import DagsterInstance, MaterializeResult, MetadataValue
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from assets.modelcache import ContentHashes, ModelCache, fingerprint
from assets.mood import stored_tag_priors
from pipelines.errors import UnavailableError
from pipelines.heal import democorpus
from pipelines.mood.priors import TagPrior, TagPriors
from pipelines.store import DATA_DIR, StoreLayout

MODELS = {"emopia_audio", "music_classifier", "query_mood_model", "audio_mood_model", "tag_priors"}
MODEL_FILES = {
    "music_classifier": "music_classifier", "query_mood_model": "query_mood", "audio_mood_model": "audio_mood",
    "tag_priors": "tag_priors",
}


def test_fingerprint_follows_file_content_and_the_model_file(tmp_path) -> None:
    layout = StoreLayout(tmp_path / "store")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.csv").write_text("x,y\n1,2\n")
    hashes = ContentHashes(layout.models_dir / "hashes.json")

    def key() -> str:
        return fingerprint(code_version="1", data={"sub": hashes.of(data / "sub")}, settings={"k": 1}, upstream={})

    first = key()
    assert key() == first and hashes.of(data / "missing") == "missing"
    model = layout.model("m")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    cache = ModelCache(layout, "m", model, first, hashes)
    trained = cache.record(MaterializeResult(metadata={"acc": 0.75, "cv": MetadataValue.json({"a": [1, 2]})}), "r1")
    assert trained.metadata["reused"] is False and trained.data_version.value == first
    reused = ModelCache(layout, "m", model, first, ContentHashes(layout.models_dir / "hashes.json")).reuse("r2")
    assert reused is not None and reused.data_version.value == first
    assert reused.metadata["reused"] is True and reused.metadata["acc"] == 0.75
    assert reused.metadata["cv"] == MetadataValue.json({"a": [1, 2]}) and reused.metadata["trained_run_id"] == "r1"
    # new training data: a new fingerprint, nothing to reuse
    (data / "sub" / "b.csv").write_text("x\n3\n")
    assert key() != first and ModelCache(layout, "m", model, key(), hashes).reuse("r3") is None
    (data / "sub" / "b.csv").unlink()
    assert key() == first
    (data / "sub" / "a.csv").write_text("x,y\n1,3\n")
    assert key() != first
    # a replaced model file is not reused under the old fingerprint
    model.write_bytes(b"other weights")
    assert ModelCache(layout, "m", model, first, hashes).reuse("r4") is None


def test_stored_tag_priors_are_read_back_and_a_missing_or_foreign_file_names_the_asset(tmp_path) -> None:
    layout = StoreLayout(tmp_path / "store")
    with pytest.raises(UnavailableError, match="materialize the tag_priors asset"):
        stored_tag_priors(layout)
    path = layout.model("tag_priors")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    with pytest.raises(UnavailableError, match="materialize the tag_priors asset"):
        stored_tag_priors(layout)
    joblib.dump({"rock": 1}, path)
    with pytest.raises(UnavailableError, match="holds a dict, not tag priors"):
        stored_tag_priors(layout)
    priors = TagPriors(priors={"metal": TagPrior(valence=-0.2, arousal=0.6, confidence=0.8, support=100)},
                       mean=(0.1, 0.0), items={"mtg_jamendo": 100, "musiccaps": 0}, reliability=(0.3, 0.3))
    joblib.dump(priors, path)
    assert stored_tag_priors(layout) == priors and stored_tag_priors(layout).lookup("Metal").arousal == 0.6


def _crawl(n: int) -> pl.DataFrame:
    return pl.concat([democorpus.musiccaps_rows(data_dir=DATA_DIR).head(n),
                      democorpus.immich_rows(data_dir=DATA_DIR).head(4)], how="vertical")


def _runs(results) -> dict[str, dict]:
    return {m.asset_key.to_user_string(): m.materialization.metadata
            for r in results for m in r.get_asset_materialization_events()}


def _files(layout: StoreLayout) -> dict[str, tuple[int, bytes]]:
    return {a: (layout.model(f).stat().st_mtime_ns, layout.model(f).read_bytes()) for a, f in MODEL_FILES.items()}


@pytest.mark.integration
@pytest.mark.slow
def test_crawl_rebuild_reuses_models_and_new_code_retrains(tmp_path) -> None:
    """(New training data retraining a model is the fingerprint test above: a second audio-mood
    training here would double the cost of this test.)"""
    from assets.graph import materialize_graph, store_assets, store_checks
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    crawl = tmp_path / "crawl.csv"
    _crawl(10).write_csv(crawl)

    def settings(emopia_limit: int = 16) -> dict:
        return resources_for("test", home_dir=tmp_path / "home", settings=MoodscapeSettings(
            crawl=str(crawl), offline=True, emopia_limit=emopia_limit, query_mood_train_limit=300, workers=2))

    def build(assets, select, resources) -> dict[str, dict]:
        results = materialize_graph(assets, store_checks, resources=resources, instance=instance, select=select)
        assert all(r.success for r in results)
        return _runs(results)

    layout = settings()["store"].layout()
    with DagsterInstance.ephemeral() as instance:
        first = build(store_assets, MODELS | {"raw_tracks"}, settings())
        assert all(first[m]["reused"].value is False for m in MODELS)
        trained = _files(layout)
        raw_version = get_stale_status_resolver(instance, store_assets).get_current_data_version(
            _keys(store_assets, {"raw_tracks"})[0])

        # A crawl rebuild: new rows, a new raw_tracks data version; every model reused, its file untouched,
        # its training metrics carried over, and Dagster sees the models as fresh.
        _crawl(25).write_csv(crawl)
        second = build(store_assets, MODELS | {"raw_tracks"}, settings())
        assert all(second[m]["reused"].value is True for m in MODELS)
        assert _files(layout) == trained
        for m in MODELS:
            kept = {k: v for k, v in first[m].items() if k not in {"reused"}}
            assert {k: second[m][k] for k in kept} == kept
        resolver = get_stale_status_resolver(instance, store_assets)
        assert all(resolver.get_status(a) == StaleStatus.FRESH for a in _keys(store_assets, MODELS))
        assert (first["raw_tracks"]["ingested"].value, second["raw_tracks"]["ingested"].value) == (14, 29)
        assert resolver.get_current_data_version(_keys(store_assets, {"raw_tracks"})[0]) != raw_version

        # A new code version of the query-mood model: it is trained again, the music classifier is not.
        changed = [a.map_asset_specs(lambda s: s.replace_attributes(code_version="2"))
                   if "query_mood_model" in {k.to_user_string() for k in a.keys} else a for a in store_assets]
        fourth = build(changed, {"query_mood_model", "music_classifier"}, settings())
        assert fourth["query_mood_model"]["reused"].value is False
        assert fourth["music_classifier"]["reused"].value is True
        assert _files(layout)["query_mood_model"][0] != trained["query_mood_model"][0]
        # the audio mood model does not read the query-mood model: still fresh
        resolver = get_stale_status_resolver(instance, changed)
        assert resolver.get_status(_keys(changed, {"audio_mood_model"})[0]) == StaleStatus.FRESH
        assert resolver.get_status(_keys(changed, {"query_mood_model"})[0]) == StaleStatus.FRESH


def _keys(assets, names: set[str]) -> list:
    return [k for a in assets for k in a.keys if k.to_user_string() in names]
