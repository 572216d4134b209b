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
"""

from __future__ import annotations

import math

SLOTS = 96
SLOT_SECONDS = 86400 // SLOTS


def alpha_for(halflife: float, step: float = 60.0) -> float:
    """EWMA weight of one new observation every ``step`` seconds for a given half-life."""
    return 1.0 - 0.5 ** (step / max(halflife, step))


class SeasonalBaseline:
    __slots__ = ("alpha", "beta", "gamma", "level", "n", "season", "season_n", "trend", "var")

    def __init__(self, halflife: float, season_halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        # each slot sees 15 updates a day: a half-life of season_halflife days in those updates
        self.gamma = 1.0 - 0.5 ** (1.0 / (SLOT_SECONDS / 60 * season_halflife / 86400))
        self.beta = self.alpha
        self.level: float | None = None
        self.trend = 0.0
        self.var = 0.0
        self.season = [0.0] * SLOTS
        self.season_n = [0] * SLOTS
        self.n = 0

    def slot(self, minute: float) -> int:
        return int(minute % 86400) // SLOT_SECONDS

    def _seasonal(self, s: int) -> float:
        """The slot's term, once a whole day was seen (before that the level alone)."""
        return self.season[s] if self.n >= 1440 and self.season_n[s] >= 15 else 0.0

    def forecast(self, minute: float) -> tuple[float, float]:
        """(expected count, sigma) for the minute starting at ``minute``."""
        if self.level is None:
            return 0.0, 1.0
        s = self.slot(minute)
        f = self.level + self.trend + self._seasonal(s)
        f = max(f, 0.0)
        return f, math.sqrt(max(self.var, f, 1.0))

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
        self.season[s] += self.gamma * (x - self.level - self.season[s]) if self.season_n[s] \
            else (x - self.level)
        self.season_n[s] += 1
        self.n += 1


class RateBaseline:
    """EWMA of a ratio (e.g. the 5xx share), weighted by the minute's volume."""

    __slots__ = ("alpha", "rate", "seen")

    def __init__(self, halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        self.rate = 0.0
        self.seen = 0.0

    def update(self, hits: float, total: float) -> None:
        if total <= 0:
            return
        w = self.alpha * min(1.0, total / 10.0)  # a minute of 2 requests barely moves it
        self.rate += w * (hits / total - self.rate)
        self.seen += total


class DecayingShares:
    """Per-value EWMA of a share of traffic, decayed lazily (values absent count as 0)."""

    def __init__(self, halflife: float) -> None:
        self.alpha = alpha_for(halflife)
        self.shares: dict[str, tuple[float, float]] = {}  # value -> (share, minute updated)

    def get(self, value: str, minute: float) -> float:
        share, at = self.shares.get(value, (0.0, minute))
        steps = max(0.0, (minute - at) / 60.0)
        return share * (1.0 - self.alpha) ** steps

    def update(self, minute: float, shares: dict[str, float]) -> None:
        for value, x in shares.items():
            old = self.get(value, minute)
            self.shares[value] = (old + self.alpha * (x - old), minute)
        if len(self.shares) > 4 * len(shares) + 1000:  # forget values decayed to nothing
            self.shares = {v: (s, at) for v, (s, at) in self.shares.items()
                           if self.get(v, minute) > 1e-6}
