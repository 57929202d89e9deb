"""Which instance types may replace an interrupted one: pure rules, so they are tested without EC2.

The `ec2ops:alternate-types` tag wins when it names at least one valid type. Without it, the alternates are the
same-size types of the same family class and generation (m5.large -> m5a.large, m5d.large, m5n.large, ...) that
the account is offered in a candidate AZ; the architecture check needs DescribeInstanceTypes and is done by the
caller. Accelerated families (GPU, Inferentia, Trainium, FPGA) get no automatic alternates: a g4dn and a g4ad carry
different GPU vendors, and a workload built for one fails on the other. Their owners list alternates in the tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

ALTERNATES_TAG = "ec2ops:alternate-types"
MAX_ALTERNATES = 8
"""Each candidate type costs one placement-score call; eight keeps Choose well inside the two minutes."""

_TYPE = re.compile(r"^(?P<cls>[a-z]+)(?P<gen>\d+)(?P<attrs>[a-z0-9-]*)\.(?P<size>[a-z0-9]+)$")
ACCELERATED_CLASSES = frozenset({"g", "p", "inf", "trn", "dl", "f", "vt", "gr"})


@dataclass(frozen=True)
class TypeName:
    """`m5dn.2xlarge` -> class m, generation 5, attributes dn, size 2xlarge."""

    family_class: str
    generation: str
    attributes: str
    size: str

    @property
    def accelerated(self) -> bool:
        """GPU, ML accelerator or FPGA families: never swapped automatically."""
        return self.family_class in ACCELERATED_CLASSES


def parse_type(instance_type: str) -> TypeName | None:
    """The parts of a type name, or None for a name outside the usual pattern (u-6tb1.metal, mac2.metal...)."""
    match = _TYPE.match(instance_type)
    if match is None:
        return None
    return TypeName(match["cls"], match["gen"], match["attrs"], match["size"])


def parse_alternates(tag_value: str | None, own_type: str) -> tuple[list[str], list[str]]:
    """The tag's types in order (valid, not the own type, no repeats, at most MAX_ALTERNATES) and the ignored ones."""
    if not tag_value:
        return [], []
    valid: list[str] = []
    ignored: list[str] = []
    for raw in tag_value.split(","):
        name = raw.strip()
        if not name:
            continue
        if parse_type(name) is None or name == own_type or name in valid or len(valid) >= MAX_ALTERNATES:
            ignored.append(name)
            continue
        valid.append(name)
    return valid, ignored


def same_generation_alternates(own_type: str, offered: Iterable[str]) -> list[str]:
    """Offered types of the same class, generation and size, other than the own type, sorted; none for accelerated."""
    own = parse_type(own_type)
    if own is None or own.accelerated:
        return []
    found = set()
    for name in offered:
        other = parse_type(name)
        if (
            other is not None
            and name != own_type
            and other.family_class == own.family_class
            and other.generation == own.generation
            and other.size == own.size
        ):
            found.add(name)
    return sorted(found)[:MAX_ALTERNATES]


@lru_cache(maxsize=1)
def _bands() -> dict[str, int]:
    """The Spot Advisor's interruption band per type (us-east-1), bundled: no API serves it."""
    text = resources.files("ec2ops_lambda").joinpath("data", "spot_interruption_bands_us-east-1.json").read_text()
    table: dict[str, int] = json.loads(text)["band_by_type"]
    return table


def interruption_band(instance_type: str) -> int | None:
    """0 (<5% a month) .. 4 (>20%), or None when the Advisor does not list the type (scored neutral)."""
    return _bands().get(instance_type)
