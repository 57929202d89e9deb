"""Can this instance run on that type? Pure comparisons of DescribeInstances and DescribeInstanceTypes answers.

Each mismatch here is one EC2 would only report after the stop (a failed modify or start, see
shared/notes/ec2-failures.md), so the plan refuses it while the instance is still untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UEFI_PREFERRED = "uefi-preferred"
ANY_BOOT_MODE = ("uefi", "legacy-bios")


@dataclass(frozen=True)
class InstanceFacts:
    """What of the instance a new type must accept; None means unknown, and is then not checked."""

    architecture: str | None
    virtualization_type: str | None
    boot_modes: tuple[str, ...] | None
    ena_enabled: bool
    network_interfaces: int


def _strings(value: Any) -> list[str]:
    """A list field of an AWS answer as strings (absent: empty)."""
    return [str(item) for item in value] if isinstance(value, Sequence) and not isinstance(value, str) else []


def _boot_modes(instance: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The boot modes the instance's AMI can use: its BootMode, else the mode it booted in, else the type's default."""
    declared = instance.get("BootMode")
    if declared == UEFI_PREFERRED:
        return ANY_BOOT_MODE
    if declared:
        return (str(declared),)
    booted = instance.get("CurrentInstanceBootMode")
    if booted:
        return (str(booted),)
    supported = _strings(current.get("SupportedBootModes"))
    return (supported[0],) if supported else None


def instance_facts(instance: Mapping[str, Any], current: Mapping[str, Any]) -> InstanceFacts:
    """The instance's facts from DescribeInstances, filled in from its current type where the instance is silent.

    ENA counts as enabled when the current type requires it: EC2 never lets an instance without ENA have that type.
    """
    architectures = _strings(current.get("ProcessorInfo", {}).get("SupportedArchitectures"))
    virtualization_types = _strings(current.get("SupportedVirtualizationTypes"))
    return InstanceFacts(
        architecture=str(instance.get("Architecture") or "") or (architectures[0] if architectures else None),
        virtualization_type=str(instance.get("VirtualizationType") or "")
        or (virtualization_types[0] if virtualization_types else None),
        boot_modes=_boot_modes(instance, current),
        ena_enabled=instance.get("EnaSupport") is True
        or current.get("NetworkInfo", {}).get("EnaSupport") == "required",
        network_interfaces=len(instance.get("NetworkInterfaces") or []),
    )


def _either(values: Sequence[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def mismatches(facts: InstanceFacts, target: Mapping[str, Any]) -> list[str]:
    """Every reason the instance cannot run on the target type, in plain words; empty when it can."""
    problems: list[str] = []
    architectures = _strings(target.get("ProcessorInfo", {}).get("SupportedArchitectures"))
    if facts.architecture and architectures and facts.architecture not in architectures:
        problems.append(
            f"its processors run {_either(architectures)} code but the instance's AMI is {facts.architecture} "
            f"(pick a type with {facts.architecture} processors, or rebuild the instance from an "
            f"{_either(architectures)} AMI)"
        )
    virtualization_types = _strings(target.get("SupportedVirtualizationTypes"))
    if facts.virtualization_type and virtualization_types and facts.virtualization_type not in virtualization_types:
        problems.append(
            f"it supports {_either(virtualization_types)} virtualization only but the instance is "
            f"{facts.virtualization_type}"
        )
    boot_modes = _strings(target.get("SupportedBootModes"))
    if facts.boot_modes and boot_modes and not set(facts.boot_modes) & set(boot_modes):
        problems.append(f"it boots {_either(boot_modes)} only but the instance boots {_either(facts.boot_modes)}")
    network = target.get("NetworkInfo", {})
    if network.get("EnaSupport") == "required" and not facts.ena_enabled:
        problems.append(
            "it requires ENA (enhanced networking), which is not enabled on the instance (enable it while the "
            "instance is stopped: aws ec2 modify-instance-attribute --ena-support, with the ENA driver in the AMI)"
        )
    limit = network.get("MaximumNetworkInterfaces")
    if isinstance(limit, int) and facts.network_interfaces > limit:
        extra = facts.network_interfaces - limit
        problems.append(
            f"it allows at most {limit} network interfaces but the instance has {facts.network_interfaces} attached "
            f"(detach {extra}, or pick a larger type)"
        )
    return problems
