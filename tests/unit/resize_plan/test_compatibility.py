"""The pure instance-versus-type comparisons, on hand-written DescribeInstances / DescribeInstanceTypes answers."""

from __future__ import annotations

from typing import Any

from ec2ops_lambda.resize.compatibility import InstanceFacts, instance_facts, mismatches


def type_info(
    *,
    architectures: tuple[str, ...] = ("x86_64",),
    virtualization: tuple[str, ...] = ("hvm",),
    boot_modes: tuple[str, ...] | None = ("legacy-bios", "uefi"),
    ena: str = "required",
    max_enis: int = 4,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "ProcessorInfo": {"SupportedArchitectures": list(architectures)},
        "SupportedVirtualizationTypes": list(virtualization),
        "NetworkInfo": {"EnaSupport": ena, "MaximumNetworkInterfaces": max_enis},
    }
    if boot_modes is not None:
        info["SupportedBootModes"] = list(boot_modes)
    return info


def facts(**changes: Any) -> InstanceFacts:
    base: dict[str, Any] = {
        "architecture": "x86_64",
        "virtualization_type": "hvm",
        "boot_modes": ("legacy-bios",),
        "ena_enabled": True,
        "network_interfaces": 1,
    }
    return InstanceFacts(**(base | changes))


# --- what the instance must keep -------------------------------------------------------------------------------


def test_the_instance_says_what_it_is_where_it_can() -> None:
    instance = {
        "Architecture": "arm64",
        "VirtualizationType": "hvm",
        "BootMode": "uefi",
        "EnaSupport": True,
        "NetworkInterfaces": [{}, {}],
    }
    assert instance_facts(instance, type_info()) == InstanceFacts("arm64", "hvm", ("uefi",), True, 2)


def test_what_the_instance_leaves_out_comes_from_its_current_type() -> None:
    current = type_info(architectures=("i386", "x86_64"), virtualization=("hvm", "paravirtual"), ena="unsupported")
    assert instance_facts({}, current) == InstanceFacts("i386", "hvm", ("legacy-bios",), False, 0)


def test_ena_counts_as_enabled_on_a_type_that_requires_it() -> None:
    """EC2 never lets an instance without ENA have such a type, even when DescribeInstances omits EnaSupport."""
    assert instance_facts({}, type_info(ena="required")).ena_enabled is True
    assert instance_facts({}, type_info(ena="supported")).ena_enabled is False
    assert instance_facts({"EnaSupport": True}, type_info(ena="supported")).ena_enabled is True


def test_the_boot_mode_the_instance_booted_in_counts_when_its_ami_declares_none() -> None:
    assert instance_facts({"CurrentInstanceBootMode": "uefi"}, type_info()).boot_modes == ("uefi",)


def test_a_uefi_preferred_ami_boots_either_way() -> None:
    boot_modes = instance_facts({"BootMode": "uefi-preferred"}, type_info()).boot_modes
    assert boot_modes == ("uefi", "legacy-bios")
    assert mismatches(facts(boot_modes=boot_modes), type_info(boot_modes=("uefi",))) == []
    assert mismatches(facts(boot_modes=boot_modes), type_info(boot_modes=("legacy-bios",))) == []


def test_no_boot_mode_anywhere_is_not_checked() -> None:
    assert instance_facts({}, type_info(boot_modes=None)).boot_modes is None
    assert mismatches(facts(boot_modes=None), type_info(boot_modes=("uefi",))) == []


# --- the comparisons -------------------------------------------------------------------------------------------


def test_a_matching_type_has_no_mismatch() -> None:
    assert mismatches(facts(), type_info()) == []


def test_a_type_silent_on_boot_modes_is_not_checked_for_them() -> None:
    assert mismatches(facts(boot_modes=("uefi",)), type_info(boot_modes=None)) == []


def test_architecture() -> None:
    assert mismatches(facts(), type_info(architectures=("arm64",))) == [
        "its processors run arm64 code but the instance's AMI is x86_64 (pick a type with x86_64 processors, "
        "or rebuild the instance from an arm64 AMI)"
    ]
    assert mismatches(facts(architecture="i386"), type_info(architectures=("i386", "x86_64"))) == []


def test_virtualization_type() -> None:
    assert mismatches(facts(virtualization_type="paravirtual"), type_info()) == [
        "it supports hvm virtualization only but the instance is paravirtual"
    ]


def test_boot_mode() -> None:
    assert mismatches(facts(boot_modes=("legacy-bios",)), type_info(boot_modes=("uefi",))) == [
        "it boots uefi only but the instance boots legacy-bios"
    ]


def test_ena_required_but_not_enabled() -> None:
    (problem,) = mismatches(facts(ena_enabled=False), type_info(ena="required"))
    assert problem.startswith("it requires ENA (enhanced networking), which is not enabled on the instance")
    assert mismatches(facts(ena_enabled=False), type_info(ena="supported")) == []


def test_network_interfaces() -> None:
    assert mismatches(facts(network_interfaces=4), type_info(max_enis=3)) == [
        "it allows at most 3 network interfaces but the instance has 4 attached (detach 1, or pick a larger type)"
    ]
    assert mismatches(facts(network_interfaces=3), type_info(max_enis=3)) == []


def test_every_mismatch_is_listed() -> None:
    problems = mismatches(
        facts(ena_enabled=False, network_interfaces=5),
        type_info(architectures=("arm64",), boot_modes=("uefi",), max_enis=2),
    )
    assert [problem.split(" ")[1] for problem in problems] == ["processors", "boots", "requires", "allows"]


def test_missing_facts_are_not_checked() -> None:
    unknown = InstanceFacts(None, None, None, True, 0)
    assert mismatches(unknown, type_info(architectures=("arm64",), virtualization=("paravirtual",))) == []
