"""Training the query mood model: choices by leave-one-out CV on train; dev numbers against the
lexicon baselines."""

import numpy as np
from sklearn.linear_model import Ridge

from pipelines.mood.query_training import ALPHAS, ridge_loo
from tests.mood.conftest import needs_text_data


@needs_text_data
def test_context_cues_keep_dev_numbers(trained) -> None:
    _, m = trained
    for key in ("valence_r", "arousal_r", "valence_ccc", "arousal_ccc"):
        assert m["dev_with_context"][key] >= m["dev"][key] - 0.01, (key, m["dev"], m["dev_with_context"])


@needs_text_data
def test_beats_lexicon_baseline_on_dev(trained) -> None:
    _, m = trained
    for axis in ("valence", "arousal"):
        for stat in ("r", "ccc"):
            key = f"{axis}_{stat}"
            assert m["dev"][key] > m["dev_lexicon_raw"][key], (key, m["dev"], m["dev_lexicon_raw"])
            assert m["dev"][key] > m["dev_lexicon_calibrated"][key], key
    assert m["dev"]["valence_r"] > 0.5


@needs_text_data
def test_choices_come_from_the_cv_table(trained) -> None:
    """Each axis's chosen configuration is the CV table's best for that axis, and the layer
    features earn their place: the full head's CV r is at least the pooled head's."""
    model, m = trained
    for head in ("full", "pooled"):
        table = m["cv"][head]
        for axis in ("valence", "arousal"):
            chosen = m["chosen"][head][axis]
            best = max(v[f"{axis}_r"] for v in table.values())
            assert chosen["loo_r"] == best
            assert table[f"w{chosen['glasgow_weight']:g}_a{chosen['alpha']:g}"][f"{axis}_r"] == best
    for axis in ("valence", "arousal"):
        assert m["chosen"]["full"][axis]["loo_r"] >= m["chosen"]["pooled"][axis]["loo_r"] - 0.01
    assert "dev" not in model.info  # nothing about dev is part of the model


def test_ridge_loo_equals_refits_without_each_row() -> None:
    """The closed-form leave-one-out predictions equal explicit refits (weighted, standardised
    ridge) without the row, and the returned coefficients apply to raw features."""
    rng = np.random.default_rng(0)
    n, d = 40, 6
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.standard_normal(d)
    z = x @ rng.standard_normal((d, 2)) + rng.standard_normal((n, 2))
    weights = np.where(np.arange(n) < 30, 1.0, 0.3)
    evaluate = np.arange(n) < 30
    fits = ridge_loo(x, z, weights=weights, evaluate=evaluate, alphas=(3.0,))
    fit = fits[0]
    mu = weights @ x / weights.sum()
    sd = np.sqrt(weights @ (x - mu) ** 2 / weights.sum()) + 1e-6
    full = Ridge(alpha=3.0).fit((x - mu) / sd, z, sample_weight=weights)
    raw = x @ fit["coef"] + fit["intercept"]
    np.testing.assert_allclose(raw, full.predict((x - mu) / sd), rtol=1e-5, atol=1e-5)  # float32 Gram
    for i in (0, 7, 29):
        keep = np.arange(n) != i
        refit = Ridge(alpha=3.0).fit(((x - mu) / sd)[keep], z[keep], sample_weight=weights[keep])
        expected = refit.predict(((x[i] - mu) / sd)[None])[0]
        np.testing.assert_allclose(fit["loo"][i], expected, rtol=1e-4, atol=1e-4)
    assert ALPHAS == tuple(sorted(ALPHAS))
