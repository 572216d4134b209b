"""Baselines the detectors compare a minute against: explainable, constant memory.

:class:`SeasonalBaseline` forecasts a per-minute count as ``level + season[slot]``:

* ``level`` is an EWMA of the deseasonalised count (half-life ``baseline_halflife``, 1 h) with
  a damped trend (Holt's method), so it follows the climb and fall within a day without lagging;
* ``season`` is a daily profile in 96 slots of 15 minutes: an EWMA, per slot, of how far the
  count sits from the level at that time of day (half-life ``season_halflife``, 3 days), so the
  morning climb and the night trough are expected rather than alarming once a day was seen;
* the spread is an EWMA of squared forecast errors, never below the count's own Poisson variance
  (``sigma = sqrt(max(var, forecast))``), so quiet sites are not judged on tiny variances.

Updates are winsorised at forecast ± 3 sigma, and skipped while a detector says the minute is
anomalous, so an incident does not teach the baseline that it is normal.

**No start-up bias.** An EWMA that starts from zero underestimates for many half-lives (after
30 minutes a one-day EWMA of a steady 43 % share reads 0.6 %). Every average here is either
seeded from its first observation (the level) or divided by the weight its
observations have had so far, ``1 - (1 - alpha)^n`` (:class:`Ewma`, the spread, rates), or is a
ratio of two EWMAs that start together, whose biases cancel (:class:`DecayingShares`).
"""

from __future__ import annotations

import math

SLOTS = 96
SLOT_SECONDS = 86400 // SLOTS


def alpha_for(halflife: float, step: float = 60.0) -> float:
    """EWMA weight of one new observation every ``step`` seconds for a given half-life."""
    return 1.0 - 0.5 ** (step / max(halflife, step))


class Ewma:
    """An exponentially weighted mean corrected for its start from zero (``mean``)."""

    __slots__ = ("alpha", "raw", "weight")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.raw = 0.0
        self.weight = 0.0  # 1 - prod(1 - w): the total weight the observations have had

    def update(self, x: float, w: float | None = None) -> None:
        w = self.alpha if w is None else w
        self.raw += w * (x - self.raw)
        self.weight += w * (1.0 - self.weight)

    @property
    def mean(self) -> float:
        return self.raw / self.weight if self.weight > 0 else 0.0


class SeasonalBaseline:
    __slots__ = ("alpha", "beta", "gamma", "level", "n", "season", "season_n", "season_w",
                 "trend", "var")

    def __init__(self, halflife: float, season_halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        # each slot sees 15 updates a day: a half-life of season_halflife days in those updates
        self.gamma = 1.0 - 0.5 ** (1.0 / (SLOT_SECONDS / 60 * season_halflife / 86400))
        self.beta = self.alpha
        self.level: float | None = None
        self.trend = 0.0
        self.var = 0.0
        self.season = [0.0] * SLOTS  # EWMA from 0 ...
        self.season_w = [0.0] * SLOTS  # ... and the weight it has had (its correction)
        self.season_n = [0] * SLOTS
        self.n = 0

    def slot(self, minute: float) -> int:
        return int(minute % 86400) // SLOT_SECONDS

    def _seasonal(self, s: int) -> float:
        """The slot's term, once a whole day was seen (before that the level alone)."""
        if self.n < 1440 or self.season_n[s] < 15:
            return 0.0
        return self.season[s] / self.season_w[s]

    def forecast(self, minute: float) -> tuple[float, float]:
        """(expected count, sigma) for the minute starting at ``minute``."""
        if self.level is None:
            return 0.0, 1.0
        s = self.slot(minute)
        f = self.level + self.trend + self._seasonal(s)
        f = max(f, 0.0)
        return f, math.sqrt(max(self.spread(), f, 1.0))

    def spread(self) -> float:
        """The variance of forecast errors, corrected for the EWMA's start from 0 (``n - 1``
        squared errors seen so far)."""
        seen = 1.0 - (1.0 - self.alpha) ** max(self.n - 1, 0)
        return self.var / seen if seen > 0 else 0.0

    def update(self, minute: float, x: float) -> None:
        s = self.slot(minute)
        if self.level is None:
            self.level = x
            self.n = 1
            return
        f, sigma = self.forecast(minute)
        x = min(max(x, f - 3 * sigma), f + 3 * sigma)
        err = x - f
        self.var += self.alpha * (err * err - self.var)
        seasonal = self._seasonal(s)
        prev = self.level
        self.level = self.alpha * (x - seasonal) + (1 - self.alpha) * (prev + self.trend)
        self.trend = 0.995 * (self.beta * (self.level - prev) + (1 - self.beta) * self.trend)
        # the slot's mean is corrected for its start from 0, so its first day is the average of
        # its minutes (one burst minute is not taken for the slot's profile)
        self.season[s] += self.gamma * (x - self.level - self.season[s])
        self.season_w[s] += self.gamma * (1.0 - self.season_w[s])
        self.season_n[s] += 1
        self.n += 1


class RateBaseline:
    """EWMA of a ratio (e.g. the 5xx share), weighted by the minute's volume."""

    __slots__ = ("alpha", "avg", "seen")

    def __init__(self, halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        self.avg = Ewma(self.alpha)
        self.seen = 0.0

    @property
    def rate(self) -> float:
        """The baseline ratio (0 before anything was seen)."""
        return self.avg.mean

    def update(self, hits: float, total: float) -> None:
        if total <= 0:
            return
        # a minute of 2 requests barely moves it
        self.avg.update(hits / total, self.alpha * min(1.0, total / 10.0))
        self.seen += total


class DecayingShares:
    """Per-value share of traffic over a decaying window: an EWMA of each value's requests a
    minute over the EWMA of all requests a minute, both decayed lazily with the same weight
    (absent values count as 0). Both start at 0 together, so their ratio has no start-up bias:
    a value holding 43 % from the first minute reads 43 % from the first minute."""

    def __init__(self, halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        self.counts: dict[str, tuple[float, float]] = {}  # value -> (EWMA count, minute)
        self.total = (0.0, 0.0)  # (EWMA of all requests, minute updated)

    def _decayed(self, entry: tuple[float, float], minute: float) -> float:
        x, at = entry
        return x * (1.0 - self.alpha) ** max(0.0, (minute - at) / 60.0)

    def seen(self, minute: float) -> float:
        """How many requests the baseline holds (decayed): its evidence for "absent"."""
        return self._decayed(self.total, minute) / self.alpha

    def get(self, value: str, minute: float) -> float:
        total = self._decayed(self.total, minute)
        if total <= 0:
            return 0.0
        return self._decayed(self.counts.get(value, (0.0, minute)), minute) / total

    def update(self, minute: float, shares: dict[str, float], total: float = 1.0) -> None:
        """One minute: ``shares`` of the minute's ``total`` requests per value."""
        a = self.alpha
        self.total = (self._decayed(self.total, minute) * (1 - a) + a * total, minute + 60)
        for value, x in shares.items():
            old = self._decayed(self.counts.get(value, (0.0, minute)), minute)
            self.counts[value] = (old * (1 - a) + a * x * total, minute + 60)
        if len(self.counts) > 4 * len(shares) + 1000:  # forget values decayed to nothing
            t = self._decayed(self.total, minute + 60)
            self.counts = {v: e for v, e in self.counts.items()
                           if self._decayed(e, minute + 60) > 1e-6 * t}
