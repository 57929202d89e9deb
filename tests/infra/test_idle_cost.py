"""Idle cost: by default nothing that bills by the hour or month; the opt-ins add exactly what they promise."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

# Resource types that cost money every hour or month they exist, whether used or not.
BILLS_WHILE_IDLE = {
    "AWS::EC2::NatGateway",
    "AWS::EC2::EIP",
    "AWS::EC2::Instance",
    "AWS::EC2::CapacityReservation",
    "AWS::EC2::TransitGateway",
    "AWS::EC2::ClientVpnEndpoint",
    "AWS::EC2::VPNConnection",
    "AWS::ElasticLoadBalancing::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::DocDB::DBCluster",
    "AWS::Neptune::DBCluster",
    "AWS::Redshift::Cluster",
    "AWS::ElastiCache::CacheCluster",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::OpenSearchService::Domain",
    "AWS::EKS::Cluster",
    "AWS::MSK::Cluster",
    "AWS::Kinesis::Stream",
    "AWS::KMS::Key",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::CompositeAlarm",
    "AWS::SecretsManager::Secret",
    "AWS::Route53::HostedZone",
    "AWS::NetworkFirewall::Firewall",
    "AWS::GlobalAccelerator::Accelerator",
}


def billed_while_idle(template: dict[str, Any]) -> list[str]:
    """Logical ids of resources that bill while nothing runs, with why."""
    found = []
    for logical, resource in template["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind in BILLS_WHILE_IDLE:
            found.append(f"{logical} ({kind})")
        elif kind == "AWS::EC2::VPCEndpoint" and props.get("VpcEndpointType", "Gateway") != "Gateway":
            found.append(f"{logical} (interface endpoint)")
        elif kind == "AWS::DynamoDB::Table" and props.get("BillingMode") != "PAY_PER_REQUEST":
            found.append(f"{logical} (provisioned DynamoDB capacity)")
        elif kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias") and "ProvisionedConcurrencyConfig" in props:
            found.append(f"{logical} (provisioned concurrency)")
    return found


def test_default_config_creates_nothing_that_bills_while_idle(default_app: Synthesized) -> None:
    # Given the app as cdk.json configures it, with the opt-ins off
    assert not default_app.config.enable_alarms and not default_app.config.enable_kms_key
    # Then no resource costs money while nothing runs
    assert billed_while_idle(default_app.template) == []


def test_gateway_endpoints_only_and_no_nat(default_app: Synthesized) -> None:
    endpoints = default_app.resources("AWS::EC2::VPCEndpoint").values()
    assert sorted(e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints) == ["Gateway", "Gateway"]
    assert default_app.resources("AWS::EC2::NatGateway") == {}


def test_opt_ins_add_the_alarms_and_the_kms_key(opt_in_app: Synthesized) -> None:
    # Given alarms and the customer key switched on
    # Then exactly those appear among what bills while idle (so the check above can fail)
    kinds = {entry.split(" (")[1].rstrip(")") for entry in billed_while_idle(opt_in_app.template)}
    assert kinds == {"AWS::CloudWatch::Alarm", "AWS::KMS::Key"}
    # and the key rotates, encrypts the bucket and the topic
    (key_id,) = opt_in_app.resources("AWS::KMS::Key")
    assert opt_in_app.resources("AWS::KMS::Key")[key_id]["Properties"]["EnableKeyRotation"] is True
    (topic,) = opt_in_app.resources("AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    # and every alarm notifies the topic
    (topic_id,) = opt_in_app.resources("AWS::SNS::Topic")
    for alarm in opt_in_app.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
