"""On-demand prices for plans: the AWS Price List API when it answers at once, else the bundled table.

A plan must never wait on prices: the Price List API gets one short try (no retries), and any failure (no route
from a private subnet, no permission, throttling, moto's 404) falls back to
`data/on_demand_prices_us-east-1.json` for every type, so a plan's prices come from one source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

logger = Logger(service="ec2ops-resize", child=True)

PriceSource = Literal["price-list", "bundled-table"]

# The Price List API lives in a few regions only; us-east-1 answers for every region.
PRICE_LIST_REGION = "us-east-1"
BUNDLED_TABLE = "on_demand_prices_us-east-1.json"
BUNDLED_TABLE_REGION = "us-east-1"
# One quick try: a plan that waits on prices is worse than a plan with the bundled ones.
_PRICE_LIST_CONFIG = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"total_max_attempts": 1, "mode": "standard"},
)
_DIGITS = 6


@dataclass(frozen=True)
class Prices:
    """USD per hour by type (None: neither source knows the type), and where they came from."""

    by_type: dict[str, float | None]
    source: PriceSource


@lru_cache(maxsize=1)
def _bundled_table() -> dict[str, Any]:
    """The bundled table, read once per container on first use (never at import)."""
    text = resources.files("ec2ops_lambda").joinpath("data", BUNDLED_TABLE).read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def bundled_price(instance_type: str) -> float | None:
    """Linux on-demand USD/hour from the bundled table (per_type first, else family per xlarge x size)."""
    table = _bundled_table()
    if instance_type in table.get("per_type", {}):
        return round(float(table["per_type"][instance_type]), _DIGITS)
    family, _, size = instance_type.partition(".")
    per_xlarge = table.get("per_xlarge", {})
    factors = table.get("size_factor", {})
    if family in per_xlarge and size in factors:
        return round(float(per_xlarge[family]) * float(factors[size]), _DIGITS)
    return None


def parse_on_demand_usd(price_list: Iterable[str]) -> float | None:
    """The hourly OnDemand USD price in a GetProducts answer (JSON strings), or None when it has none."""
    for document in price_list:
        product = json.loads(document)
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is not None and str(dimension.get("unit", "Hrs")).lower().startswith("hr") and float(usd) > 0:
                    return round(float(usd), _DIGITS)
    return None


def _term(field: str, value: str) -> dict[str, str]:
    """One GetProducts filter."""
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


class PriceBook:
    """Where plans get prices; the Price List client is made on first use and can be replaced in tests."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """The `pricing` client in us-east-1, short timeouts, a single attempt."""
        if self._client is None:
            self._client = boto3.client("pricing", region_name=PRICE_LIST_REGION, config=_PRICE_LIST_CONFIG)
        return self._client

    def price_list_price(self, instance_type: str, region: str) -> float | None:
        """Linux, shared tenancy, no pre-installed software, on-demand USD/hour in `region` from the Price List."""
        answer = self.client.get_products(
            ServiceCode="AmazonEC2",
            Filters=[
                _term("instanceType", instance_type),
                _term("regionCode", region),
                _term("operatingSystem", "Linux"),
                _term("tenancy", "Shared"),
                _term("preInstalledSw", "NA"),
                _term("capacitystatus", "Used"),
            ],
            FormatVersion="aws_v1",
            MaxResults=10,
        )
        return parse_on_demand_usd(answer.get("PriceList", []))

    def on_demand(self, instance_types: Iterable[str], region: str) -> Prices:
        """Prices of these types in `region`: all from the Price List, or, if any call fails, all from the table."""
        names = list(dict.fromkeys(instance_types))
        try:
            return Prices({name: self.price_list_price(name, region) for name in names}, "price-list")
        except Exception as error:  # any failure at all: the plan goes on with the bundled prices
            logger.info("price list unavailable, using the bundled table", extra={"error": repr(error)})
        return Prices({name: bundled_price(name) for name in names}, "bundled-table")
