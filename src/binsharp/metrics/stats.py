"""Paired significance tests between two methods scored on the same images.

With a dozen test images, a difference of means alone can be luck: :func:`paired_wilcoxon` asks, per index,
whether the per-image differences of method A and method B are centred on zero (Wilcoxon signed-rank test,
two-sided, :func:`scipy.stats.wilcoxon`; exact null distribution for small samples without ties or zeros,
the normal approximation otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from binsharp.errors import BinsharpError

__all__ = ["WILCOXON_TEST", "PairedTest", "paired_wilcoxon"]

#: Name of the test of :func:`paired_wilcoxon`, for reports.
WILCOXON_TEST = "Wilcoxon signed-rank (two-sided, paired per image)"


@dataclass(frozen=True)
class PairedTest:
    """Result of one paired test on one index.

    Attributes:
        index: index name (e.g. ``"q2n"``).
        n: number of paired images.
        mean_diff: mean of ``a - b`` over the images.
        wins: images where A is better than B (by :data:`binsharp.metrics.HIGHER_IS_BETTER`; for an unknown
            index, where ``a > b``).
        statistic: the Wilcoxon ``W`` statistic (``nan`` when every difference is zero).
        p_value: two-sided p-value (1.0 when every difference is zero).
        test: the test's name, for reports.
    """

    index: str
    n: int
    mean_diff: float
    wins: int
    statistic: float
    p_value: float
    test: str = WILCOXON_TEST

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return self.p_value < alpha


def paired_wilcoxon(
    a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], indexes: Sequence[str] | None = None
) -> dict[str, PairedTest]:
    """Wilcoxon signed-rank test of methods A and B for each index, on per-image scores of the same images.

    Args:
        a, b: index name -> per-image values (same images, same order), e.g. the ``per_image`` of
            :func:`binsharp.metrics.evaluate_batch`.
        indexes: the indexes to test (default: those present in both).

    Returns:
        index name -> :class:`PairedTest`.

    Raises:
        BinsharpError: unequal numbers of images, fewer than 2 images, or non-finite values.
    """
    from scipy.stats import wilcoxon

    from binsharp.metrics import HIGHER_IS_BETTER

    names = list(indexes) if indexes is not None else [k for k in a if k in b]
    out: dict[str, PairedTest] = {}
    for name in names:
        if name not in a or name not in b:
            raise BinsharpError(f"index {name!r} is missing from one of the two methods")
        x, y = np.asarray(a[name], dtype=np.float64), np.asarray(b[name], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise BinsharpError(f"index {name!r}: the two methods have {x.shape} and {y.shape} values")
        if x.size < 2:
            raise BinsharpError(f"index {name!r}: a paired test needs at least 2 images, got {x.size}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise BinsharpError(f"index {name!r}: non-finite per-image values")
        d = x - y
        better = d > 0 if HIGHER_IS_BETTER.get(name, True) else d < 0
        if not d.any():
            stat, p = float("nan"), 1.0
        else:
            r = wilcoxon(x, y, alternative="two-sided", zero_method="wilcox")
            stat, p = float(r.statistic), float(r.pvalue)
        out[name] = PairedTest(name, int(x.size), float(d.mean()), int(better.sum()), stat, p)
    return out
