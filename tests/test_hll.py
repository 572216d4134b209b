"""The HyperLogLog sketch of distinct 4xx targets (collector/aggregates/hll.py)."""

from __future__ import annotations

import pytest

from collector.aggregates.hll import HyperLogLog, new_key

# A fixed key makes the estimates below repeatable: with a fresh random key each run, the
# 10-item count came out 9 once in CI (two items in one register), and a 3-sigma bound fails
# about one run in 370 by design.
KEY = bytes(range(16))


@pytest.mark.parametrize("n", [1, 7, 20, 100, 480, 5000, 50_000])
def test_estimates_within_three_standard_errors(n: int) -> None:
    h = HyperLogLog(KEY)
    for i in range(n):
        h.add(f"/wp-admin/{i}")
        h.add(f"/wp-admin/{i}")  # repeats do not count
    assert abs(h.estimate() - n) <= max(1.0, 3 * 0.065 * n), (n, h.estimate())


def test_small_counts_are_nearly_exact_and_empty_is_zero() -> None:
    h = HyperLogLog(KEY)
    assert len(h) == 0
    for i in range(10):
        h.add(f"/p{i}")
    assert len(h) == 10


def test_merge_is_the_union_and_keys_must_match() -> None:
    key = KEY
    a, b = HyperLogLog(key), HyperLogLog(key)
    for i in range(300):
        a.add(str(i))
        b.add(str(i + 150))
    a.merge(b)
    assert abs(a.estimate() - 450) <= 3 * 0.065 * 450
    with pytest.raises(ValueError, match="same precision and key"):
        a.merge(HyperLogLog(new_key()))
    with pytest.raises(ValueError, match=r"4\.\.16"):
        HyperLogLog(key, p=2)


def test_the_sketch_keeps_no_item() -> None:
    h = HyperLogLog(new_key())
    h.add("/secret-admin-path")
    assert b"secret" not in bytes(h.regs) and len(h.regs) == 256
