"""CI smoke run of the labelled replay benchmark (bench/detect_eval.py): hours, not a week.

The full week and its table are in bench/RESULTS.md and docs/detection.md; here a few hours of
the same four sites with the incidents that fit, through the aggregates' writer and the
detectors, must meet the goals the docs claim: every injected incident found, no false alarm,
a median time to report of at most two log minutes, no `new_source` for a country or ASN that
held >= 5 % of the previous hour.
"""

from __future__ import annotations

from bench.detect_eval import run, summary, table


def test_a_few_hours_of_labelled_traffic_meet_the_goals() -> None:
    res = run(days=0.3, seed=5)
    out = summary(res)
    print(table(res))
    assert out["incidents"] >= 3, out
    assert out["recall"] == 1.0, table(res)
    assert out["false_alarms"] == 0, table(res)
    assert out["median_minutes"] is not None and out["median_minutes"] <= 2, out
    assert out["newcomer_violations"] == 0, table(res)
    assert res.records > 50_000
