"""Spot prices and placement scores come from the seeded market built from real snapshots."""

from __future__ import annotations

from ec2ops.local import LocalCloud
from ec2ops.local.market import on_demand_price


def test_spot_prices_come_from_the_market_not_moto_constants(cloud: LocalCloud) -> None:
    history = cloud.ec2.describe_spot_price_history(
        InstanceTypes=["c5.xlarge", "c7i.8xlarge"],
        ProductDescriptions=["Linux/UNIX (Amazon VPC)"],
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a", "us-east-1b"]}],
    )["SpotPriceHistory"]
    prices = {(h["InstanceType"], h["AvailabilityZone"]): float(h["SpotPrice"]) for h in history}
    assert set(prices) == {(t, z) for t in ("c5.xlarge", "c7i.8xlarge") for z in ("us-east-1a", "us-east-1b")}
    assert all(price > 0.001 for price in prices.values())
    # a spot price is a discount on on-demand: below it, and not absurdly so
    on_demand = on_demand_price("c7i.8xlarge")
    assert on_demand is not None
    for zone in ("us-east-1a", "us-east-1b"):
        assert 0.2 * on_demand < prices[("c7i.8xlarge", zone)] < on_demand
    assert prices[("c7i.8xlarge", "us-east-1a")] != prices[("c7i.8xlarge", "us-east-1b")]
    assert {h["Timestamp"].year for h in history} == {cloud.clock.now().year}


def test_a_pinned_pool_is_what_the_api_reports(cloud: LocalCloud) -> None:
    cloud.market.set_pool("c7i.8xlarge", "us-east-1b", spot_price=0.123, placement_score=2)
    history = cloud.ec2.describe_spot_price_history(InstanceTypes=["c7i.8xlarge"], AvailabilityZone="us-east-1b")[
        "SpotPriceHistory"
    ]
    assert [float(h["SpotPrice"]) for h in history] == [0.123]


def test_placement_scores_are_answered_per_az(cloud: LocalCloud) -> None:
    cloud.market.set_pool("m7i.8xlarge", "us-east-1a", spot_price=0.5, placement_score=8)
    scores = cloud.ec2.get_spot_placement_scores(
        InstanceTypes=["m7i.8xlarge"],
        TargetCapacity=1,
        SingleAvailabilityZone=True,
        RegionNames=["us-east-1"],
    )["SpotPlacementScores"]
    by_zone = {s["AvailabilityZoneId"]: s["Score"] for s in scores}
    assert by_zone["use1-az6"] == 8  # us-east-1a
    assert all(1 <= score <= 10 for score in by_zone.values())
