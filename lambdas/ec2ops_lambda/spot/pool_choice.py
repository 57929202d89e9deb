"""Which pool to launch a spot replacement in: pure, so the scoring of docs/spot-failover.md is tested alone.

Candidates are the quoted (instance type, AZ) pools. Never chosen: the pool just interrupted, a pool with a bad
mark (failed or interrupted recently, from the ledger) that has not expired, a pool without a spot price. Those are
still listed, with `excluded_because`, so the ledger explains the whole decision. Each candidate gets score parts
in [0, 1] (higher is better); its total is their weighted sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ec2ops_lambda.models.common import as_utc, iso

NEUTRAL = 0.5
"""The part given for an unknown placement score, interruption band or on-demand price: neither reward nor penalty."""

MAX_BAND = 4
"""Spot Advisor bands of monthly interruption frequency: 0 <5%, 1 5-10%, 2 10-15%, 3 15-20%, 4 >20%."""


@dataclass(frozen=True, order=True)
class Pool:
    """One spot capacity pool: an instance type in an availability zone."""

    instance_type: str
    availability_zone: str

    def __post_init__(self) -> None:
        if not self.instance_type or not self.availability_zone:
            raise ValueError(f"a pool needs an instance type and an availability zone (got {self!r})")

    @property
    def name(self) -> str:
        """How the ledger and messages name the pool."""
        return f"{self.instance_type}/{self.availability_zone}"


def _check_price(what: str, pool: Pool, price: float | None) -> None:
    """A price of zero, below zero or NaN is a bug upstream, not a bargain."""
    if price is not None and not (math.isfinite(price) and price > 0):
        raise ValueError(f"{what} of {pool.name} must be a positive number of USD per hour (got {price!r})")


@dataclass(frozen=True)
class PoolQuote:
    """What is known of a pool now; None where the API gave nothing (each unknown scores neutral or excludes)."""

    pool: Pool
    spot_price: float | None
    placement_score: int | None = None
    interruption_band: int | None = None
    on_demand_price: float | None = None

    def __post_init__(self) -> None:
        _check_price("spot price", self.pool, self.spot_price)
        _check_price("on-demand price", self.pool, self.on_demand_price)
        if self.placement_score is not None and not 1 <= self.placement_score <= 10:
            raise ValueError(f"placement score of {self.pool.name} must be 1..10 (got {self.placement_score!r})")
        if self.interruption_band is not None and not 0 <= self.interruption_band <= MAX_BAND:
            raise ValueError(
                f"interruption band of {self.pool.name} must be 0..{MAX_BAND} (got {self.interruption_band!r})"
            )


@dataclass(frozen=True)
class BadPoolMark:
    """A pool that failed a launch or was interrupted recently: avoided until `until`, as the ledger recorded."""

    pool: Pool
    reason: str
    until: datetime


@dataclass(frozen=True)
class ScoreWeights:
    """How much each part counts; they sum to 1 so a total stays in [0, 1] and reads as the parts do.

    price 0.40: spot savings are the point of running spot, so price counts most, but not alone.
    interruption 0.30: each Spot Advisor band step costs 0.075, more than a ~10% price difference, since a
        replacement that is reclaimed again soon costs another failover (downtime, lost work).
    placement 0.25: the chance the launch succeeds now, inside the two minutes; a failed launch costs time.
    same_type 0.05: the workload is sized for its own type; enough to win near-ties (~10-15% of price), less
        than one interruption band step, so it never keeps a risky pool.
    """

    price: float = 0.40
    interruption: float = 0.30
    placement: float = 0.25
    same_type: float = 0.05

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(not (math.isfinite(value) and value >= 0) for value in values.values()):
            raise ValueError(f"weights must be non-negative numbers (got {values})")
        if not math.isclose(sum(values.values()), 1.0, abs_tol=1e-9):
            raise ValueError(f"weights must sum to 1 (got {values}, sum {sum(values.values())})")


DEFAULT_WEIGHTS = ScoreWeights()


@dataclass(frozen=True)
class RankedPool:
    """One pool in the decision: a ranked candidate with its score parts, or an excluded pool and why."""

    pool: Pool
    total: float | None
    parts: dict[str, float] = field(default_factory=dict)
    spot_price: float | None = None
    on_demand_price: float | None = None
    hourly_savings: float | None = None
    rank: int | None = None
    excluded_because: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready for the ledger; scores rounded so the record reads plainly."""
        return {
            "pool": self.pool.name,
            "instance_type": self.pool.instance_type,
            "availability_zone": self.pool.availability_zone,
            "rank": self.rank,
            "total": None if self.total is None else round(self.total, 6),
            "parts": {name: round(value, 6) for name, value in self.parts.items()},
            "spot_price": self.spot_price,
            "on_demand_price": self.on_demand_price,
            "hourly_savings": None if self.hourly_savings is None else round(self.hourly_savings, 6),
            "excluded_because": self.excluded_because,
        }


def _unique(quotes: Sequence[PoolQuote]) -> None:
    """Two quotes for one pool would make the choice depend on input order."""
    if not quotes:
        raise ValueError("no pools quoted: there is nothing to choose from")
    seen: set[Pool] = set()
    for quote in quotes:
        if quote.pool in seen:
            raise ValueError(f"pool {quote.pool.name} is quoted twice")
        seen.add(quote.pool)


def _savings(quote: PoolQuote) -> float | None:
    """USD per hour saved versus on-demand in the same pool, when both prices are known."""
    if quote.spot_price is None or quote.on_demand_price is None:
        return None
    return quote.on_demand_price - quote.spot_price


def _exclusion(quote: PoolQuote, interrupted: Pool, marks: dict[Pool, BadPoolMark]) -> str | None:
    """Why a pool cannot be a candidate, or None when it can."""
    if quote.pool == interrupted:
        return "the interrupted pool"
    mark = marks.get(quote.pool)
    if mark is not None:
        return f"marked bad until {iso(mark.until)}: {mark.reason}"
    if quote.spot_price is None:
        return "no spot price"
    return None


def score_parts(quote: PoolQuote, *, cheapest_spot: float, interrupted: Pool) -> dict[str, float]:
    """The parts of one candidate's score, each in [0, 1], higher is better."""
    if quote.spot_price is None:
        raise ValueError(f"pool {quote.pool.name} has no spot price to score")
    versus_cheapest = cheapest_spot / quote.spot_price
    if quote.on_demand_price is None:
        discount = NEUTRAL
    else:
        discount = min(1.0, max(0.0, 1.0 - quote.spot_price / quote.on_demand_price))
    return {
        "price": (versus_cheapest + discount) / 2,
        "interruption": NEUTRAL if quote.interruption_band is None else 1.0 - quote.interruption_band / MAX_BAND,
        "placement": NEUTRAL if quote.placement_score is None else quote.placement_score / 10,
        "same_type": 1.0 if quote.pool.instance_type == interrupted.instance_type else 0.0,
    }


def rank_pools(
    quotes: Sequence[PoolQuote],
    *,
    interrupted: Pool,
    bad: Iterable[BadPoolMark],
    now: datetime,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
) -> list[RankedPool]:
    """Candidates best first (rank 1..n), then the excluded pools by name, each with its reason."""
    _unique(quotes)
    moment = as_utc(now)
    marks: dict[Pool, BadPoolMark] = {}
    for mark in bad:
        if as_utc(mark.until) > moment and (mark.pool not in marks or mark.until > marks[mark.pool].until):
            marks[mark.pool] = mark
    weight_of = asdict(weights)
    candidates: list[PoolQuote] = []
    excluded: list[RankedPool] = []
    for quote in quotes:
        reason = _exclusion(quote, interrupted, marks)
        if reason is None:
            candidates.append(quote)
        else:
            excluded.append(
                RankedPool(
                    pool=quote.pool,
                    total=None,
                    spot_price=quote.spot_price,
                    on_demand_price=quote.on_demand_price,
                    hourly_savings=_savings(quote),
                    excluded_because=reason,
                )
            )
    scored: list[tuple[float, PoolQuote, dict[str, float]]] = []
    if candidates:
        cheapest = min(quote.spot_price for quote in candidates if quote.spot_price is not None)
        for quote in candidates:
            parts = score_parts(quote, cheapest_spot=cheapest, interrupted=interrupted)
            scored.append((sum(weight_of[name] * value for name, value in parts.items()), quote, parts))
    scored.sort(key=lambda item: (-item[0], item[1].spot_price, item[1].pool))
    ranked = [
        RankedPool(
            pool=quote.pool,
            total=total,
            parts=parts,
            spot_price=quote.spot_price,
            on_demand_price=quote.on_demand_price,
            hourly_savings=_savings(quote),
            rank=rank,
        )
        for rank, (total, quote, parts) in enumerate(scored, start=1)
    ]
    return ranked + sorted(excluded, key=lambda item: item.pool)


def best_pool(ranked: Sequence[RankedPool]) -> RankedPool | None:
    """The pool to try first, or None when every pool is excluded (go to on-demand)."""
    return next((item for item in ranked if item.excluded_because is None), None)


def on_demand_fallback_order(quotes: Sequence[PoolQuote], interrupted: Pool) -> list[PoolQuote]:
    """Where to try on-demand when spot fails account-wide: cheapest first, the interrupted type first on ties.

    Nothing is excluded (on-demand capacity in the interrupted pool's AZ is fine); pools without an on-demand
    price come last.
    """
    _unique(quotes)
    return sorted(
        quotes,
        key=lambda quote: (
            quote.on_demand_price is None,
            quote.on_demand_price or 0.0,
            quote.pool.instance_type != interrupted.instance_type,
            quote.pool,
        ),
    )
