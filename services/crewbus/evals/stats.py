"""The statistics of evaluations, from scipy and numpy (never hand-written formulas).

- `wilson_interval`: a pass rate's confidence interval (Wilson score, as
  `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`): sound at small n and
  at rates of 0 or 1, where the textbook normal interval collapses.
- `bootstrap_mean_interval`: a mean's interval by resampling (`scipy.stats.bootstrap`,
  BCa by default, a fixed seed so the figures repeat). Degenerate cases are answered
  without resampling: no values or one value → None (one value says nothing about
  spread); all values equal → (v, v), the only mean any resample can have. When BCa
  itself cannot be computed (rare: nearly degenerate data) the percentile interval of
  the same resamples is returned instead.
- `percentile`: numpy's (linear interpolation), None for no values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

DEFAULT_SEED = 20_240_601
"""The bootstrap's seed unless one is given: printed beside every interval it makes."""
DEFAULT_RESAMPLES = 10_000

BootstrapMethod = Literal["BCa", "percentile", "basic"]


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """The Wilson score interval of `successes` out of `n`; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, not {successes}")
    interval = stats.binomtest(successes, n).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(interval.low), float(interval.high)


def bootstrap_mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    method: BootstrapMethod = "BCa",
) -> tuple[float, float] | None:
    """The bootstrap interval of the mean of `values` (see the module's note on n < 2
    and zero variance)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return None
    if np.ptp(data) <= 1e-12 * max(1.0, float(np.abs(data).max())):
        point = float(data.mean())
        return point, point
    result = _bootstrap(data, confidence, resamples, seed, method)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if method != "percentile" and not (math.isfinite(low) and math.isfinite(high)):
        result = _bootstrap(data, confidence, resamples, seed, "percentile")
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return low, high


def _bootstrap(
    data: np.ndarray, confidence: float, resamples: int, seed: int, method: BootstrapMethod
) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.bootstrap(
            (data,),
            np.mean,
            n_resamples=resamples,
            confidence_level=confidence,
            method=method,
            vectorized=True,
            rng=np.random.default_rng(seed),
        )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`th percentile (0..100) of `values`, linearly interpolated; None if empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))
