"""Which types may replace an interrupted one: the tag, else the same class, generation and size."""

from __future__ import annotations

from ec2ops_lambda.spot.candidates import (
    MAX_ALTERNATES,
    interruption_band,
    parse_alternates,
    parse_type,
    same_generation_alternates,
)

OFFERED = [
    "m5.large", "m5a.large", "m5d.large", "m5n.large", "m5.xlarge", "m6i.large", "m4.large",
    "c5.large", "g4dn.2xlarge", "g4ad.2xlarge", "u-6tb1.metal",
]  # fmt: skip


def test_type_names_split_into_class_generation_attributes_and_size() -> None:
    name = parse_type("m5dn.2xlarge")
    assert name is not None
    assert (name.family_class, name.generation, name.attributes, name.size) == ("m", "5", "dn", "2xlarge")
    assert parse_type("c7i-flex.large") is not None
    assert parse_type("u-6tb1.metal") is None
    assert parse_type("nonsense") is None


def test_same_generation_alternates_keep_class_generation_and_size() -> None:
    assert same_generation_alternates("m5.large", OFFERED) == ["m5a.large", "m5d.large", "m5n.large"]


def test_gpu_families_get_no_automatic_alternates() -> None:
    # a g4dn (NVIDIA) and a g4ad (AMD) share class, generation and size, but not a driver
    assert same_generation_alternates("g4dn.2xlarge", OFFERED) == []


def test_an_unusual_type_name_has_no_alternates() -> None:
    assert same_generation_alternates("u-6tb1.metal", OFFERED) == []


def test_the_alternates_tag_keeps_order_and_reports_what_it_ignored() -> None:
    valid, ignored = parse_alternates(" c6i.large, m5.large,bogus, c6i.large ,m6i.large,", "m5.large")
    assert valid == ["c6i.large", "m6i.large"]
    assert ignored == ["m5.large", "bogus", "c6i.large"]


def test_the_alternates_tag_is_capped() -> None:
    many = ",".join(f"c{gen}.large" for gen in range(1, 20))
    valid, ignored = parse_alternates(many, "m5.large")
    assert len(valid) == MAX_ALTERNATES
    assert len(ignored) == 19 - MAX_ALTERNATES


def test_no_tag_means_no_tagged_alternates() -> None:
    assert parse_alternates(None, "m5.large") == ([], [])
    assert parse_alternates("", "m5.large") == ([], [])


def test_interruption_bands_come_from_the_bundled_advisor_table() -> None:
    band = interruption_band("m5.large")
    assert band is not None and 0 <= band <= 4
    assert interruption_band("no-such.type") is None
