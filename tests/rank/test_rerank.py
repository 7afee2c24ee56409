"""MMR re-ranking: the blended similarity (text, audio, mood, artist), artist spacing, version dedup."""

import numpy as np
import pytest

from pipelines.rank.rerank import ARTIST_WINDOW, SIMILARITY_WEIGHTS, blended_similarity, mmr


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_blend_is_one_for_identical_tracks_and_renormalises_missing_parts() -> None:
    text = _unit(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    audio = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # row 1 has no audio
    moods = np.array([[0.5, 0.5], [0.5, 0.5], [np.nan, np.nan]])
    artists = np.array([7, 7, -1])
    sim = blended_similarity(text=text, artists=artists, audio=audio, moods=moods)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sim)[:2], 1.0)
    # 0 and 1: same text, same mood, same artist; audio missing on 1 is left out, not counted as 0
    assert sim[0, 1] == pytest.approx(1.0)
    # 0 and 2: orthogonal text and audio; mood and artist unknown on 2 → text and audio only
    assert sim[0, 2] == pytest.approx(0.0)
    np.testing.assert_allclose(sim, sim.T)


def test_each_part_moves_the_similarity() -> None:
    text = _unit(np.array([[1.0, 0.2], [1.0, -0.2]]))
    base = blended_similarity(text=text, artists=np.array([1, 2]))
    same_artist = blended_similarity(text=text, artists=np.array([1, 1]))
    assert same_artist[0, 1] > base[0, 1]
    near = blended_similarity(text=text, artists=np.array([1, 2]), moods=np.array([[0.5, 0.5], [0.45, 0.5]]))
    far = blended_similarity(text=text, artists=np.array([1, 2]), moods=np.array([[0.5, 0.5], [-0.9, -0.9]]))
    assert near[0, 1] > far[0, 1]
    alike = blended_similarity(text=text, artists=np.array([1, 2]), audio=np.array([[1.0, 0.0], [1.0, 0.0]]))
    unlike = blended_similarity(text=text, artists=np.array([1, 2]), audio=np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert alike[0, 1] > unlike[0, 1]
    assert set(SIMILARITY_WEIGHTS) == {"text", "audio", "mood", "artist"}


def _pool(n: int = 12):
    """n candidates with identical text; scores descending; two mood clusters and two audio clusters
    interleaved so that the best-scored half sits in one cluster."""
    text = np.tile(_unit(np.array([[1.0, 1.0, 0.0]])), (n, 1))
    scores = np.linspace(1.0, 0.9, n)
    cluster = np.array([0] * (n // 2) + [1] * (n - n // 2))
    moods = np.where(cluster[:, None] == 0, [0.8, 0.8], [-0.8, -0.8]).astype(np.float64)
    audio = np.where(cluster[:, None] == 0, [1.0, 0.0], [0.0, 1.0]).astype(np.float64)
    return text, scores, cluster, moods, audio


def _run(scores, text, *, k=4, lam=0.5, artists=None, versions=None, **kw):
    n = len(scores)
    return mmr(
        scores=scores, k=k, vectors=lambda pos: text[pos], mmr_lambda=lam,
        artists=np.full(n, -1) if artists is None else artists,
        versions=np.full(n, -1) if versions is None else versions,
        **kw,
    )


def test_text_only_similarity_cannot_diversify_identical_texts() -> None:
    text, scores, cluster, _, _ = _pool()
    order = _run(scores, text)
    assert list(order) == [0, 1, 2, 3]  # all equally similar: score order
    assert set(cluster[order]) == {0}


@pytest.mark.parametrize("part", ["moods", "audio"])
def test_mood_and_audio_spread_the_results(part) -> None:
    text, scores, cluster, moods, audio = _pool()
    kw = {"moods": moods} if part == "moods" else {"audio": lambda pos: audio[pos]}
    order = _run(scores, text, **kw)
    assert order[0] == 0 and set(cluster[order[:2]]) == {0, 1}
    # no diversity (λ = 1): the scores alone decide
    assert list(_run(scores, text, lam=1.0, **kw)) == [0, 1, 2, 3]


def test_same_artist_counts_as_similar_beyond_spacing() -> None:
    text, scores, _, _, _ = _pool(8)
    artists = np.array([1, 1, 1, 1, 2, 3, 4, 5])
    order = _run(scores, text, k=4, lam=0.5, artists=artists)
    # spacing alone would allow artist 1 again at position 3; the artist part keeps it out longer
    assert list(artists[order]).count(1) == 1


def test_artist_spacing_and_version_dedup_stay() -> None:
    rng = np.random.default_rng(0)
    n = 40
    text = _unit(rng.normal(size=(n, 8)))
    scores = np.sort(rng.random(n))[::-1]
    artists = np.arange(n) % 4
    versions = np.arange(n) // 2  # pairs of versions of one song
    order = _run(scores, text, k=12, lam=0.7, artists=artists, versions=versions,
                 moods=rng.uniform(-1, 1, size=(n, 2)), audio=lambda pos: _unit(rng.normal(size=(len(pos), 4))))
    assert len(order) == 12 and len(set(order)) == 12
    assert len(set(versions[order])) == 12
    picked = list(artists[order])
    for i in range(len(picked) - ARTIST_WINDOW + 1):
        window = picked[i:i + ARTIST_WINDOW]
        assert len(set(window)) == len(window)


def test_empty_and_zero_k() -> None:
    text = np.zeros((0, 3))
    assert len(_run(np.zeros(0), text)) == 0
    text, scores, _, _, _ = _pool()
    assert len(_run(scores, text, k=0)) == 0
