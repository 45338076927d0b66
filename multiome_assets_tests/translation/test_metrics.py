"""Translation metrics that a user reads a translator's quality from."""
import numpy as np
import pytest

from multiome_assets.translation import metrics


def test_prediction_spread_flags_a_translator_that_gives_every_cell_the_same_profile():
    rng = np.random.default_rng(1)
    truth = (rng.random((50, 30)) < 0.3).astype(np.float32)
    collapsed = np.tile(truth.mean(0), (50, 1))  # the same profile for every cell, on average right
    assert metrics.prediction_spread(collapsed, truth) == 0.0
    assert metrics.prediction_spread(truth, truth) == pytest.approx(1.0)
    assert 0 < metrics.prediction_spread(0.5 * truth + 0.2, truth) == pytest.approx(0.25)
    assert {"prediction_spread"} <= set(metrics.atac_metrics(collapsed, truth, 0.3, None))
    assert metrics.rna_metrics(collapsed, truth)["prediction_spread"] == 0.0
