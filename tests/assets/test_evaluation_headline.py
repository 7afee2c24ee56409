"""The evaluation asset's headline metadata: flat numbers from every report section."""

from assets.evaluation import _headline


def test_headline_flattens_moods_rankings_latency_and_sounds_like() -> None:
    report = {
        "n_tracks": 200,
        "n_queries": 0,
        "track_mood": {"valence_r": 0.40026, "by_source": {"audio": {}}},
        "ranking": {"full": {"p@10": 0.3}},
        "latency_ms": {"full": {"p50": 12.5}},
        "sounds_like": {"k": 10, "methods": {"served": {"precision@10": 0.68812, "n": 200},
                                            "handcrafted": {"precision@10": 0.506}}},
    }
    head = _headline(report)
    assert head["track_mood.valence_r"] == 0.4003 and "track_mood.by_source" not in head
    assert head["ranking.full.p@10"] == 0.3 and head["latency_ms.full.p50"] == 12.5
    assert head["sounds_like.served.precision@10"] == 0.6881
    assert head["sounds_like.handcrafted.precision@10"] == 0.506
    assert not any(k.startswith("sounds_like") for k in _headline({"n_tracks": 1}))
