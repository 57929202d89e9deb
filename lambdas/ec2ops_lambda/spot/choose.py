"""Choose: gather the market for the candidate pools and rank them (the scoring itself is pool_choice.py).

Candidates are the instance's type and its alternates (candidates.py) in every AZ that has a subnet of the
instance's VPC and where EC2 offers the type. Inputs: current spot prices (DescribeSpotPriceHistory), single-AZ
placement scores (GetSpotPlacementScores, one call per type), the Spot Advisor's interruption band (bundled), the
live bad-pool marks (ledger) and on-demand prices. A missing placement score or band scores neutral; a failed
placement-score call is noted and scored neutral (the API allows few distinct requests a day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

from ec2ops_lambda.aws.bad_pools import BadPools
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.spot_ec2 import SpotEc2
from ec2ops_lambda.models.spot import ChooseResult, PoolOption, SourceInstance
from ec2ops_lambda.pricing import PriceBook
from ec2ops_lambda.spot.candidates import interruption_band, same_generation_alternates
from ec2ops_lambda.spot.pool_choice import Pool, PoolQuote, on_demand_fallback_order, rank_pools


@dataclass(frozen=True)
class Market:
    """Where Choose reads from."""

    ec2: SpotEc2
    bad_pools: BadPools
    prices: PriceBook


def candidate_types(source: SourceInstance, ec2: SpotEc2, zones: list[str], notes: list[str]) -> list[str]:
    """The own type first, then alternates of the same architecture (tagged, else the same generation)."""
    if source.alternate_types:
        alternates = list(source.alternate_types)
        notes.append(f"alternates from the ec2ops:alternate-types tag: {', '.join(alternates)}")
    else:
        alternates = same_generation_alternates(source.instance_type, ec2.offered_types(zones))
        notes.append(
            "alternates of the same class, generation and size offered here: " + (", ".join(alternates) or "none")
        )
    if source.ignored_alternates:
        notes.append(f"ignored in the alternates tag: {', '.join(source.ignored_alternates)}")
    architectures = ec2.architectures(alternates)
    kept = []
    for name in alternates:
        if name not in architectures:
            notes.append(f"{name}: EC2 does not know this type")
        elif source.architecture not in architectures[name]:
            notes.append(f"{name}: not {source.architecture} ({', '.join(sorted(architectures[name]))})")
        else:
            kept.append(name)
    return [source.instance_type, *kept]


def choose(source: SourceInstance, market: Market, *, now: datetime) -> ChooseResult:
    """The ranked decision and the orders Launch tries: spot pools best first, then on-demand cheapest first."""
    ec2 = market.ec2
    notes: list[str] = []
    subnets = ec2.subnets_by_zone(source.vpc_id, source.subnet_id, source.availability_zone)
    zones = sorted(subnets)
    types = candidate_types(source, ec2, zones, notes)
    offered = ec2.offerings_by_zone(types, zones)
    spot_prices = ec2.spot_prices(types, zones, now)
    zone_ids = ec2.zone_ids()
    scores: dict[tuple[str, str], int] = {}
    for instance_type in types:
        try:
            by_zone_id = ec2.placement_scores(instance_type, ec2.region)
        except ClientError as error:
            notes.append(f"placement scores of {instance_type} unavailable ({error_code(error)}): scored neutral")
            continue
        for zone in zones:
            if zone_ids.get(zone) in by_zone_id:
                scores[(instance_type, zone)] = by_zone_id[zone_ids[zone]]
    on_demand = market.prices.on_demand(types, ec2.region)
    quotes = [
        PoolQuote(
            Pool(instance_type, zone),
            spot_price=spot_prices.get((instance_type, zone)),
            placement_score=scores.get((instance_type, zone)),
            interruption_band=interruption_band(instance_type),
            on_demand_price=on_demand.by_type.get(instance_type),
        )
        for instance_type in types
        for zone in zones
        if (instance_type, zone) in offered or Pool(instance_type, zone) == source.pool
    ]
    ranked = rank_pools(quotes, interrupted=source.pool, bad=market.bad_pools.active(now), now=now)

    def option(pool: Pool, spot: float | None, demand: float | None) -> PoolOption:
        return PoolOption(
            instance_type=pool.instance_type,
            availability_zone=pool.availability_zone,
            subnet_id=subnets[pool.availability_zone],
            spot_price=spot,
            on_demand_price=demand,
        )

    return ChooseResult(
        ranked=[item.as_dict() for item in ranked],
        spot_order=[
            option(item.pool, item.spot_price, item.on_demand_price) for item in ranked if item.excluded_because is None
        ],
        on_demand_order=[
            option(quote.pool, quote.spot_price, quote.on_demand_price)
            for quote in on_demand_fallback_order(quotes, source.pool)
        ],
        interrupted_pool=source.pool.name,
        price_source=on_demand.source,
        notes=notes,
    )
