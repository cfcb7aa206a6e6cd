"""Paired Wilcoxon signed-rank test of two methods' per-image scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from binsharp.errors import BinsharpError
from binsharp.metrics import paired_wilcoxon


def test_consistent_difference_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, 12)
    a = {"q2n": base + 0.01 + rng.normal(0, 0.002, 12), "sam": 3.0 + rng.normal(0, 0.1, 12)}
    b = {"q2n": base, "sam": 3.0 + rng.normal(0, 0.1, 12)}
    r = paired_wilcoxon(a, b)
    assert r["q2n"].significant() and r["q2n"].p_value == pytest.approx(2 / 2**12)  # exact: all 12 positive
    assert r["q2n"].wins == 12 and r["q2n"].n == 12 and r["q2n"].mean_diff > 0
    assert not r["sam"].significant()
    assert r["sam"].p_value == pytest.approx(wilcoxon(a["sam"], b["sam"]).pvalue)


def test_wins_follow_the_direction_of_each_index():
    a, b = {"sam": [2.0, 2.0, 2.0, 5.0]}, {"sam": [3.0, 3.0, 3.0, 4.0]}
    assert paired_wilcoxon(a, b)["sam"].wins == 3  # lower SAM is better


def test_identical_scores_and_bad_input():
    assert paired_wilcoxon({"q2n": [0.9, 0.8]}, {"q2n": [0.9, 0.8]})["q2n"].p_value == 1.0
    with pytest.raises(BinsharpError, match="values"):
        paired_wilcoxon({"q2n": [0.9, 0.8]}, {"q2n": [0.9]})
    with pytest.raises(BinsharpError, match="at least 2"):
        paired_wilcoxon({"q2n": [0.9]}, {"q2n": [0.8]})
    with pytest.raises(BinsharpError, match="missing"):
        paired_wilcoxon({"q2n": [0.9, 0.8]}, {"sam": [1.0, 2.0]}, indexes=["q2n"])
