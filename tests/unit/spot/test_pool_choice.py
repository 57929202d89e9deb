"""The spot failover's pool choice on hand-built markets: what is excluded, what wins, how the ledger explains it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ec2ops_lambda.spot.pool_choice import (
    DEFAULT_WEIGHTS,
    BadPoolMark,
    Pool,
    PoolQuote,
    RankedPool,
    ScoreWeights,
    best_pool,
    on_demand_fallback_order,
    rank_pools,
)

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
C7I_OD = 1.428
C6I_OD = 1.36
M7I_OD = 1.6128
INTERRUPTED = Pool("c7i.8xlarge", "us-east-1a")


def quote(
    type_az: str, spot: float | None, *, score: int | None = 7, band: int | None = 1, od: float | None = C7I_OD
) -> PoolQuote:
    instance_type, az = type_az.split("/")
    return PoolQuote(Pool(instance_type, az), spot, placement_score=score, interruption_band=band, on_demand_price=od)


def rank(quotes: list[PoolQuote], bad: list[BadPoolMark] | None = None, **kwargs: Any) -> list[RankedPool]:
    return rank_pools(quotes, interrupted=INTERRUPTED, bad=bad or [], now=NOW, **kwargs)


def order(ranked: list[RankedPool]) -> list[str]:
    return [item.pool.name for item in ranked if item.excluded_because is None]


def test_the_interrupted_pool_is_never_chosen_even_when_cheapest_and_safest() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1a", 0.30, score=10, band=0), quote("c7i.8xlarge/us-east-1b", 0.60)])
    assert order(ranked) == ["c7i.8xlarge/us-east-1b"]
    assert ranked[-1].pool == INTERRUPTED
    assert ranked[-1].excluded_because == "the interrupted pool"
    assert ranked[-1].rank is None and ranked[-1].total is None


def test_a_pool_marked_bad_until_later_is_excluded_and_explained() -> None:
    mark = BadPoolMark(Pool("c7i.8xlarge", "us-east-1b"), "InsufficientInstanceCapacity", NOW + timedelta(minutes=5))
    ranked = rank([quote("c7i.8xlarge/us-east-1b", 0.50), quote("c7i.8xlarge/us-east-1c", 0.60)], [mark])
    assert order(ranked) == ["c7i.8xlarge/us-east-1c"]
    excluded = ranked[-1]
    assert excluded.pool == mark.pool
    assert excluded.excluded_because == "marked bad until 2025-06-30T12:05:00.000Z: InsufficientInstanceCapacity"


def test_an_expired_bad_mark_no_longer_excludes_the_pool() -> None:
    expired = BadPoolMark(Pool("c7i.8xlarge", "us-east-1b"), "interrupted", NOW)
    naive_expired = BadPoolMark(Pool("c7i.8xlarge", "us-east-1b"), "interrupted", datetime(2025, 6, 30, 11, 0))
    ranked = rank(
        [quote("c7i.8xlarge/us-east-1b", 0.50), quote("c7i.8xlarge/us-east-1c", 0.60)], [expired, naive_expired]
    )
    assert order(ranked) == ["c7i.8xlarge/us-east-1b", "c7i.8xlarge/us-east-1c"]


def test_a_pool_without_a_spot_price_is_excluded_and_explained() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1b", None), quote("c7i.8xlarge/us-east-1c", 0.60)])
    assert order(ranked) == ["c7i.8xlarge/us-east-1c"]
    assert ranked[-1].excluded_because == "no spot price"


def test_when_every_pool_is_excluded_there_is_no_best_pool() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1a", 0.50), quote("c7i.8xlarge/us-east-1b", None)])
    assert best_pool(ranked) is None
    assert [item.excluded_because for item in ranked] == ["the interrupted pool", "no spot price"]


def test_the_cheaper_pool_wins_when_risk_is_equal() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1b", 0.60), quote("c7i.8xlarge/us-east-1c", 0.55)])
    assert order(ranked) == ["c7i.8xlarge/us-east-1c", "c7i.8xlarge/us-east-1b"]
    assert [item.rank for item in ranked] == [1, 2]
    assert ranked[0].parts["price"] > ranked[1].parts["price"]


def test_a_low_risk_pool_beats_a_slightly_cheaper_high_risk_one() -> None:
    # 0.50 vs 0.55 USD/h (the risky pool is ~9% cheaper) but band 3 (15-20% interrupted a month) vs band 1 (5-10%):
    # two band steps cost 0.15 of total with the default weights, the price difference only ~0.02.
    risky = quote("c7i.8xlarge/us-east-1b", 0.50, band=3)
    calm = quote("c7i.8xlarge/us-east-1c", 0.55, band=1)
    ranked = rank([risky, calm])
    assert order(ranked) == ["c7i.8xlarge/us-east-1c", "c7i.8xlarge/us-east-1b"]
    assert ranked[0].total is not None and ranked[1].total is not None
    assert ranked[0].total - ranked[1].total > 0.1


def test_a_much_cheaper_pool_still_beats_one_band_of_extra_risk() -> None:
    # The trade-off goes both ways: 40% cheaper (0.33 vs 0.55) outweighs one band step (0.075 of total).
    ranked = rank([quote("c7i.8xlarge/us-east-1b", 0.33, band=1), quote("c7i.8xlarge/us-east-1c", 0.55, band=0)])
    assert order(ranked) == ["c7i.8xlarge/us-east-1b", "c7i.8xlarge/us-east-1c"]


def test_unknown_placement_band_and_on_demand_price_score_neutral() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1b", 0.50, score=None, band=None, od=None)])
    parts = ranked[0].parts
    assert parts["placement"] == 0.5
    assert parts["interruption"] == 0.5
    assert parts["price"] == pytest.approx((1.0 + 0.5) / 2)
    assert ranked[0].hourly_savings is None


def test_the_interrupted_type_in_another_az_is_preferred_on_a_near_tie() -> None:
    ranked = rank([quote("c6i.8xlarge/us-east-1b", 0.50, od=C7I_OD), quote("c7i.8xlarge/us-east-1b", 0.50)])
    assert order(ranked) == ["c7i.8xlarge/us-east-1b", "c6i.8xlarge/us-east-1b"]
    assert [item.parts["same_type"] for item in ranked] == [1.0, 0.0]


def test_the_total_is_the_weighted_sum_of_the_parts() -> None:
    for item in rank(
        [quote("c6i.8xlarge/us-east-1b", 0.55, score=9, od=C6I_OD), quote("c7i.8xlarge/us-east-1c", 0.52)]
    ):
        expected = sum(getattr(DEFAULT_WEIGHTS, name) * value for name, value in item.parts.items())
        assert item.total == pytest.approx(expected)
        assert all(0.0 <= value <= 1.0 for value in item.parts.values())


def test_ties_break_by_price_then_name_whatever_the_input_order() -> None:
    same = [quote(f"c7i.8xlarge/us-east-1{az}", 0.55) for az in "fbdc"]
    weights = ScoreWeights(price=0.0, interruption=0.5, placement=0.5, same_type=0.0)
    dearest = quote("c7i.8xlarge/us-east-1e", 0.60, score=7)
    cheapest = quote("c7i.8xlarge/us-east-1g", 0.50, score=7)
    expected = [
        "c7i.8xlarge/us-east-1g",
        "c7i.8xlarge/us-east-1b",
        "c7i.8xlarge/us-east-1c",
        "c7i.8xlarge/us-east-1d",
        "c7i.8xlarge/us-east-1f",
        "c7i.8xlarge/us-east-1e",
    ]
    assert order(rank([dearest, *same, cheapest], weights=weights)) == expected
    assert order(rank([cheapest, *reversed(same), dearest], weights=weights)) == expected


def test_hourly_savings_is_on_demand_minus_spot() -> None:
    ranked = rank([quote("c7i.8xlarge/us-east-1b", 0.55), quote("m7i.8xlarge/us-east-1c", 0.66, od=M7I_OD)])
    savings = {item.pool.name: item.hourly_savings for item in ranked}
    assert savings["c7i.8xlarge/us-east-1b"] == pytest.approx(C7I_OD - 0.55)
    assert savings["m7i.8xlarge/us-east-1c"] == pytest.approx(M7I_OD - 0.66)


def test_as_dict_is_json_ready_for_the_ledger() -> None:
    mark = BadPoolMark(Pool("c6i.8xlarge", "us-east-1b"), "Unsupported", NOW + timedelta(hours=1))
    ranked = rank(
        [
            quote("c7i.8xlarge/us-east-1a", 0.5),
            quote("c6i.8xlarge/us-east-1b", 0.5),
            quote("c7i.8xlarge/us-east-1c", 0.6),
        ],
        [mark],
    )
    record = json.loads(json.dumps([item.as_dict() for item in ranked]))
    assert record[0]["pool"] == "c7i.8xlarge/us-east-1c"
    assert record[0]["rank"] == 1
    assert set(record[0]["parts"]) == {"price", "interruption", "placement", "same_type"}
    assert record[0]["hourly_savings"] == pytest.approx(C7I_OD - 0.6)
    assert [entry["excluded_because"] for entry in record[1:]] == [
        "marked bad until 2025-06-30T13:00:00.000Z: Unsupported",
        "the interrupted pool",
    ]


def test_a_plausible_us_east_1_market() -> None:
    quotes = [
        quote("c7i.8xlarge/us-east-1a", 0.52, score=6, band=2),  # interrupted, cheapest of the type
        quote("c7i.8xlarge/us-east-1b", 0.58, score=8, band=1),
        quote("c7i.8xlarge/us-east-1d", 0.54, score=5, band=3),
        quote("c6i.8xlarge/us-east-1b", 0.55, score=9, band=1, od=C6I_OD),
        quote("m7i.8xlarge/us-east-1c", 0.66, score=7, band=0, od=M7I_OD),
        quote("c6i.8xlarge/us-east-1f", 0.51, score=7, band=1, od=C6I_OD),  # cheapest, but failed a launch
    ]
    mark = BadPoolMark(Pool("c6i.8xlarge", "us-east-1f"), "InsufficientInstanceCapacity", NOW + timedelta(minutes=30))
    ranked = rank(quotes, [mark])
    # Same type, low risk, good placement wins by a little over c6i (cheaper, better placement, other type);
    # the cheap c7i pool in 1d loses on its 15-20% band.
    assert order(ranked) == [
        "c7i.8xlarge/us-east-1b",
        "c6i.8xlarge/us-east-1b",
        "m7i.8xlarge/us-east-1c",
        "c7i.8xlarge/us-east-1d",
    ]
    best = best_pool(ranked)
    assert best is not None and best.hourly_savings == pytest.approx(0.848)
    assert [item.pool.name for item in ranked[4:]] == ["c6i.8xlarge/us-east-1f", "c7i.8xlarge/us-east-1a"]


def test_on_demand_fallback_is_cheapest_first_same_type_first_on_ties_and_excludes_nothing() -> None:
    quotes = [
        quote("m7i.8xlarge/us-east-1c", 0.66, od=M7I_OD),
        quote("c7i.8xlarge/us-east-1b", 0.58, od=C6I_OD),
        quote("c6i.8xlarge/us-east-1b", None, od=C6I_OD),
        quote("c7i.8xlarge/us-east-1a", 0.52),
        quote("c6i.8xlarge/us-east-1f", 0.51, od=None),
    ]
    assert [q.pool.name for q in on_demand_fallback_order(quotes, INTERRUPTED)] == [
        "c7i.8xlarge/us-east-1b",
        "c6i.8xlarge/us-east-1b",
        "c7i.8xlarge/us-east-1a",
        "m7i.8xlarge/us-east-1c",
        "c6i.8xlarge/us-east-1f",
    ]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: quote("c7i.8xlarge/us-east-1b", 0.5, score=0), "placement score"),
        (lambda: quote("c7i.8xlarge/us-east-1b", 0.5, score=11), "placement score"),
        (lambda: quote("c7i.8xlarge/us-east-1b", 0.5, band=-1), "interruption band"),
        (lambda: quote("c7i.8xlarge/us-east-1b", 0.5, band=5), "interruption band"),
        (lambda: quote("c7i.8xlarge/us-east-1b", -0.5), "spot price"),
        (lambda: quote("c7i.8xlarge/us-east-1b", 0.5, od=-1.0), "on-demand price"),
        (lambda: quote("c7i.8xlarge/us-east-1b", float("nan")), "spot price"),
        (lambda: Pool("", "us-east-1a"), "availability zone"),
        (lambda: ScoreWeights(price=0.5), "sum to 1"),
        (lambda: ScoreWeights(price=1.2, interruption=-0.2), "non-negative"),
        (lambda: rank([]), "no pools"),
        (lambda: on_demand_fallback_order([], INTERRUPTED), "no pools"),
        (lambda: rank([quote("c7i.8xlarge/us-east-1b", 0.5), quote("c7i.8xlarge/us-east-1b", 0.6)]), "quoted twice"),
    ],
)
def test_bad_inputs_raise_a_clear_value_error(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
