"""Group-sequential boundaries: how small a p-value must be at each look so that, over all looks, a true null is
rejected with probability at most alpha.

A comparison is looked at after n_1 < n_2 < ... < n_K articles (the plan fixed before the first look, n_K the
cap `eval.max_test`). Lan & DeMets (1983) alpha spending: by information fraction t = n_k / n_K at most
alpha(t) of the error has been spent; the Pocock-type spending function alpha(t) = alpha * ln(1 + (e - 1) t)
(Kim & DeMets 1987) spends evenly enough that an early look can decide a clear difference. The critical |z| of each
look follows from the joint normal law of the standardised sums at the looks (independent increments), computed by
the recursive numerical integration of Armitage, McPherson & Rowe (1969) on a grid: deterministic, no sampling.

Written here (about 40 lines) rather than taken from a library: no package in our field's stack computes these
boundaries (scipy has none; R's gsDesign/rpact are the usual references), and this is the textbook recursion.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

_N = NormalDist()
_cdf = np.frompyfunc(lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0)), 1, 1)
SPENDING = "Lan-DeMets alpha spending, Pocock-type: alpha(t) = alpha * ln(1 + (e - 1) t)"


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return _cdf(np.asarray(x, dtype=float)).astype(float)


def spent(t: float, alpha: float) -> float:
    """The share of alpha that may be spent by information fraction t (0 <= t <= 1)."""
    return alpha * math.log(1.0 + (math.e - 1.0) * min(max(t, 0.0), 1.0))


@lru_cache(maxsize=512)
def critical_z(fractions: tuple[float, ...], alpha: float, grid: int = 801) -> tuple[float, ...]:
    """Two-sided critical |z| at each look (information fractions, increasing, last 1.0) so that the probability
    of first crossing at look k under the null is spent(t_k) - spent(t_{k-1})."""
    out: list[float] = []
    density = None  # density of the Brownian sum S(t) = Z * sqrt(t) on `points`, on paths that have not crossed
    points = np.zeros(0)
    previous_t = 0.0
    for t in fractions:
        target = spent(t, alpha) - spent(previous_t, alpha)
        if density is None:  # first look: S(t) ~ N(0, t)
            c = -_N.inv_cdf(target / 2.0) if target > 0 else math.inf
        else:
            step = math.sqrt(t - previous_t)
            weight = density * (points[1] - points[0])
            lo, hi = 0.0, 12.0
            for _ in range(60):  # the crossing probability falls as c grows
                mid = (lo + hi) / 2.0
                upper = (mid * math.sqrt(t) - points) / step
                lower = (-mid * math.sqrt(t) - points) / step
                crossing = float(np.sum(weight * (1.0 - normal_cdf(upper) + normal_cdf(lower))))
                lo, hi = (mid, hi) if crossing > target else (lo, mid)
            c = hi
        out.append(c)
        bound = c * math.sqrt(t) if math.isfinite(c) else 12.0 * math.sqrt(t)
        new_points = np.linspace(-bound, bound, grid)
        if density is None:
            density = np.exp(-new_points ** 2 / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            step = math.sqrt(t - previous_t)
            gap = (new_points[:, None] - points[None, :]) / step
            kernel = np.exp(-gap ** 2 / 2) / (step * math.sqrt(2 * math.pi))
            density = kernel @ (density * (points[1] - points[0]))
        points, previous_t = new_points, t
    return tuple(out)


def nominal_p(sizes: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    """The two-sided p-value each look must go below, for looks after `sizes` articles (the last: the cap)."""
    if len(sizes) == 1:
        return (alpha,)
    fractions = tuple(n / sizes[-1] for n in sizes)
    return tuple(min(alpha, 2.0 * (1.0 - _N.cdf(c))) for c in critical_z(fractions, alpha))
