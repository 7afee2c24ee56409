"""The learned-ranker asset's glue: the content-keyed text cache, batched query moods, publishing."""

import numpy as np

from assets.publish import _extra_files
from assets.ranker import CachedEncoder, PredictedMoods
from pipelines.index.bundle import RANKER_FILE
from pipelines.store import StoreLayout


def test_cached_encoder_embeds_each_text_once_and_persists(tmp_path) -> None:
    from pipelines.embed.sentence import embed_texts

    layout = StoreLayout(tmp_path / "store")
    enc = CachedEncoder(layout)
    texts = ["sad piano at night", "happy summer party", "sad piano at night"]
    first = enc(texts)
    assert first.shape == (3, 384) and enc.new == 2
    np.testing.assert_allclose(first[0], first[2])
    np.testing.assert_allclose(first[:2], embed_texts(texts[:2]), atol=1e-5)
    enc.save()
    again = CachedEncoder(layout)
    np.testing.assert_allclose(again(texts), first, atol=1e-6)
    assert again.new == 0  # nothing embedded: every text came from the store table
    assert again([]).shape == (0, 384)


def test_predicted_moods_answer_known_texts_from_the_batch(mood_adapter, embed_cached) -> None:
    texts = ["I lost everything today.", "What a wonderful surprise!"]
    moods = PredictedMoods(mood_adapter, texts)
    np.testing.assert_allclose(moods.predict([texts[1]]), mood_adapter.predict([texts[1]]), atol=1e-5)
    other = "An ordinary sentence about tables."
    np.testing.assert_allclose(moods.predict([other]), mood_adapter.predict([other]), atol=1e-5)


def test_the_version_carries_the_ranker_only_when_one_was_trained(tmp_path) -> None:
    layout = StoreLayout(tmp_path / "store")
    assert RANKER_FILE not in _extra_files(layout, has_audio_index=False)
    layout.model("ranker").parent.mkdir(parents=True)
    layout.model("ranker").write_bytes(b"x")
    files = _extra_files(layout, has_audio_index=True)
    assert files[RANKER_FILE] == layout.model("ranker")
    assert files[layout.audio_space_file.name] == layout.audio_space_file
