"""Prices: the Price List API when it answers, the bundled table when anything goes wrong, never a wait."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError
from ec2ops_lambda.pricing import PriceBook, bundled_price, parse_on_demand_usd


def product(usd: str, unit: str = "Hrs") -> str:
    """One GetProducts PriceList entry, trimmed to what matters."""
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": "c7i.8xlarge"}},
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd}}}
                    }
                }
            },
        }
    )


class FakePriceList:
    """A `pricing` client that answers from a dict, or raises."""

    def __init__(self, prices: dict[str, str] | None = None, error: Exception | None = None) -> None:
        self.prices = prices or {}
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def get_products(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        terms = {f["Field"]: f["Value"] for f in kwargs["Filters"]}
        usd = self.prices.get(terms["instanceType"])
        return {"PriceList": [product(usd)] if usd is not None else []}


def test_bundled_table_scales_a_family_by_size() -> None:
    assert bundled_price("t3.2xlarge") == 0.3328
    assert bundled_price("c7i.8xlarge") == 1.428
    assert bundled_price("c7g.medium") == pytest.approx(0.03625)


def test_bundled_table_lists_gpu_types_one_by_one() -> None:
    assert bundled_price("g5.xlarge") == 1.006
    assert bundled_price("g5.48xlarge") is None


def test_bundled_table_does_not_guess_unknown_families_or_sizes() -> None:
    assert bundled_price("z1d.large") is None
    assert bundled_price("t3.nano") is None


def test_parse_takes_the_hourly_usd_price() -> None:
    assert parse_on_demand_usd([product("1.4280000000")]) == 1.428
    assert parse_on_demand_usd([product("0.0000000000"), product("0.17")]) == 0.17
    assert parse_on_demand_usd([product("5", unit="Quantity")]) is None
    assert parse_on_demand_usd([]) is None


def test_the_price_list_is_used_when_it_answers() -> None:
    client = FakePriceList({"t3.2xlarge": "0.3712000000", "c7i.8xlarge": "1.5900000000"})
    prices = PriceBook(client).on_demand(["t3.2xlarge", "c7i.8xlarge", "x9.huge"], "eu-west-1")
    assert prices.source == "price-list"
    assert prices.by_type == {"t3.2xlarge": 0.3712, "c7i.8xlarge": 1.59, "x9.huge": None}
    filters = {f["Field"]: f["Value"] for f in client.calls[0]["Filters"]}
    assert filters == {
        "instanceType": "t3.2xlarge",
        "regionCode": "eu-west-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetProducts"),
        ConnectTimeoutError(endpoint_url="https://api.pricing.us-east-1.amazonaws.com"),
    ],
    ids=["denied", "timeout"],
)
def test_any_price_list_failure_falls_back_to_the_table_at_once(error: Exception) -> None:
    client = FakePriceList(error=error)
    prices = PriceBook(client).on_demand(["t3.2xlarge", "c7i.8xlarge"], "us-east-1")
    assert prices.source == "bundled-table"
    assert prices.by_type == {"t3.2xlarge": 0.3328, "c7i.8xlarge": 1.428}
    assert len(client.calls) == 1, "one failure is enough: no retry, no further calls"


def test_the_real_client_tries_once_with_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    client = PriceBook().client
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.connect_timeout <= 2
    assert client.meta.config.read_timeout <= 3
    assert client.meta.config.retries["total_max_attempts"] == 1
