"""Models pickled under the earlier flat module layout still load (a store published before the
packages moved keeps serving). The pickles are written naming the classes by their old paths."""

import sys

import joblib

from pipelines import store
from pipelines.mood import audio_model, query
from pipelines.mood.audio_model import AudioMoodModel
from pipelines.mood.query import MODEL_VERSION, QueryMoodModel


def test_query_mood_model_pickled_as_pipelines_querymood_loads(tmp_path, monkeypatch) -> None:
    path = tmp_path / "query_mood.joblib"
    with monkeypatch.context() as m:
        m.setattr(QueryMoodModel, "__module__", "pipelines.querymood")
        m.setitem(sys.modules, "pipelines.querymood", query)
        joblib.dump({"version": MODEL_VERSION, "model": QueryMoodModel}, path)
    sys.modules.pop("pipelines.querymood", None)
    assert b"pipelines.querymood" in path.read_bytes()
    assert QueryMoodModel.load(path) is QueryMoodModel


def test_audio_mood_model_pickled_as_pipelines_mood_loads(tmp_path, monkeypatch) -> None:
    path = tmp_path / "audio_mood.joblib"
    with monkeypatch.context() as m:
        m.setattr(AudioMoodModel, "__module__", "pipelines.mood")
        m.setattr(audio_model.ScaledLogisticRegression, "__module__", "pipelines.mood")
        joblib.dump({"model": AudioMoodModel, "estimator": audio_model.ScaledLogisticRegression}, path)
    assert b"pipelines.mood.audio_model" not in path.read_bytes()
    loaded = store.read_model(path)
    assert loaded["model"] is AudioMoodModel
    assert loaded["estimator"] is audio_model.ScaledLogisticRegression


def test_an_old_name_never_replaces_a_module_that_exists(tmp_path) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump([1, 2], path)
    store.read_model(path, legacy_modules={"pipelines.store": query})
    assert sys.modules["pipelines.store"] is store
