"""A seeded spot market: prices and placement scores from real snapshots, not moto's constants.

moto answers DescribeSpotPriceHistory with 0.00001 USD dated 2006 and does not implement GetSpotPlacementScores.
The market answers both from data/spot_market_us-east-1.json (built by tools/build_market_data.py from the
SpotLake and Spot Advisor snapshots in ../shared/data/spot). A pool the 2022 snapshot lacks (newer types such as
c7i) is priced from the bundled on-demand table and the Advisor's savings, with a fixed per-AZ spread; prices
drift a little, deterministically, with the emulator hour. Tests can pin any pool with `set_pool`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "spot_market_us-east-1.json"
ON_DEMAND = (
    Path(__file__).resolve().parents[2] / "lambdas" / "ec2ops_lambda" / "data" / "on_demand_prices_us-east-1.json"
)


@dataclass(frozen=True)
class Pool:
    instance_type: str
    zone_id: str
    spot_price: float
    placement_score: int  # 1..10, as GetSpotPlacementScores answers
    interruption_band: int  # 0 (<5%) .. 4 (>20%), as the Spot Advisor gives


@lru_cache(maxsize=1)
def _market_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    return data


@lru_cache(maxsize=1)
def _on_demand_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(ON_DEMAND.read_text())
    return table


def on_demand_price(instance_type: str) -> float | None:
    """Bundled on-demand USD/hour (Linux, us-east-1), or None for a type the table does not know."""
    table = _on_demand_table()
    if instance_type in table["per_type"]:
        return float(table["per_type"][instance_type])
    family, _, size = instance_type.partition(".")
    if family in table["per_xlarge"] and size in table["size_factor"]:
        return round(float(table["per_xlarge"][family]) * float(table["size_factor"][size]), 5)
    return None


def _spread(*parts: str, low: float, high: float) -> float:
    """A fixed pseudo-random number in [low, high] for these parts (same seed, same market)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return low + (high - low) * int.from_bytes(digest[:4], "big") / 0xFFFFFFFF


class SpotMarket:
    """Spot prices and placement scores by (instance type, AZ), seeded and overridable."""

    def __init__(self, zone_ids: dict[str, str], seed: int = 7) -> None:
        self.zone_ids = zone_ids  # AZ name -> zone id (us-east-1a -> use1-az6)
        self.seed = seed
        self._overrides: dict[tuple[str, str], Pool] = {}

    def set_pool(
        self,
        instance_type: str,
        availability_zone: str,
        *,
        spot_price: float,
        placement_score: int = 9,
        interruption_band: int = 0,
    ) -> None:
        """Pin a pool (tests: make one pool the cheapest, or the riskiest)."""
        zone_id = self.zone_ids[availability_zone]
        self._overrides[(instance_type, zone_id)] = Pool(
            instance_type, zone_id, spot_price, placement_score, interruption_band
        )

    def pool(self, instance_type: str, availability_zone: str, at: datetime) -> Pool | None:
        zone_id = self.zone_ids.get(availability_zone)
        if zone_id is None:
            return None
        if (instance_type, zone_id) in self._overrides:
            return self._overrides[(instance_type, zone_id)]
        data = _market_data()
        advice = data["advisor"].get(instance_type, {})
        band = int(advice.get("interruption_band", 2))
        drift = _spread(str(self.seed), instance_type, zone_id, at.strftime("%Y%m%d%H"), low=0.97, high=1.03)
        known = data["pools"].get(instance_type, {}).get(zone_id)
        if known is not None:
            score = max(1, min(10, round(float(known.get("sps", 2.0)) * 3)))
            return Pool(instance_type, zone_id, round(known["spot_price"] * drift, 5), score, band)
        on_demand = on_demand_price(instance_type)
        if on_demand is None or not advice:
            return None
        spread = _spread(str(self.seed), instance_type, zone_id, low=0.9, high=1.1)
        price = on_demand * (1 - advice["savings_pct"] / 100) * spread * drift
        score = max(1, min(10, round(9 - 2 * band + 2 * (1.0 - spread) * 10)))
        return Pool(instance_type, zone_id, round(price, 5), score, band)

    def price_history(
        self, instance_types: list[str], availability_zones: list[str], at: datetime
    ) -> list[dict[str, Any]]:
        history = []
        for instance_type in instance_types:
            for zone in availability_zones:
                pool = self.pool(instance_type, zone, at)
                if pool is None:
                    continue
                history.append(
                    {
                        "AvailabilityZone": zone,
                        "InstanceType": instance_type,
                        "ProductDescription": "Linux/UNIX (Amazon VPC)",
                        "SpotPrice": f"{pool.spot_price:.6f}",
                        "Timestamp": at.replace(minute=0, second=0, microsecond=0),
                    }
                )
        return history

    def placement_scores(
        self, instance_types: list[str], availability_zones: list[str], at: datetime, region: str
    ) -> list[dict[str, Any]]:
        """Single-AZ scores: one per AZ, the best the requested types can do there."""
        scores = []
        for zone in availability_zones:
            pools = [p for p in (self.pool(t, zone, at) for t in instance_types) if p is not None]
            if pools:
                scores.append(
                    {
                        "Region": region,
                        "AvailabilityZoneId": self.zone_ids[zone],
                        "Score": max(p.placement_score for p in pools),
                    }
                )
        return scores
