"""The stack's shape: one offline-synthesizable stack per environment, its network, storage and tags."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def test_one_stack_named_after_the_environment_in_the_region_without_an_account(default_app: Synthesized) -> None:
    stack = default_app.stack
    assert stack.stack_name == "ec2ops-dev"
    assert default_app.template_path.name == "ec2ops-dev.template.json"
    assert stack.region == "us-east-1"
    assert stack.account.startswith("${Token[")  # no account: synth needs no credentials


def test_synth_needs_no_context_lookup(default_app: Synthesized) -> None:
    # A lookup (AZs, AMIs, VPCs) would record missing context and need credentials to resolve it.
    manifest = json.loads((default_app.template_path.parent / "manifest.json").read_text())
    assert manifest.get("missing", []) == []


def test_public_subnets_one_per_configured_az_no_nat(default_app: Synthesized) -> None:
    subnets = default_app.resources("AWS::EC2::Subnet").values()
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets) == sorted(default_app.config.availability_zones)
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets)
    assert default_app.resources("AWS::EC2::NatGateway") == {}
    services = sorted(
        json.dumps(e["Properties"]["ServiceName"]) for e in default_app.resources("AWS::EC2::VPCEndpoint").values()
    )
    assert [("dynamodb" in s, "s3" in s) for s in services] == [(True, False), (False, True)]


def test_vpc_flow_logs_go_to_the_log_bucket(default_app: Synthesized) -> None:
    (log_bucket,) = [
        logical
        for logical, r in default_app.resources("AWS::S3::Bucket").items()
        if "LoggingConfiguration" not in r["Properties"]
    ]
    (flow_log,) = default_app.resources("AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["LogDestinationType"] == "s3"
    assert {"Fn::GetAtt": [log_bucket, "Arn"]} in flow_log["Properties"]["LogDestination"]["Fn::Join"][1]


def test_the_instance_security_group_allows_https_out_and_nothing_in(default_app: Synthesized) -> None:
    (group,) = default_app.resources("AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]
    rules = [
        {k: v for k, v in rule.items() if k != "Description"} for rule in group["Properties"]["SecurityGroupEgress"]
    ]
    assert rules == [{"CidrIp": "0.0.0.0/0", "FromPort": 443, "IpProtocol": "tcp", "ToPort": 443}]
    assert default_app.resources("AWS::EC2::SecurityGroupIngress") == {}


def test_buckets_block_public_access_require_tls_and_encrypt(default_app: Synthesized) -> None:
    for logical, bucket in default_app.resources("AWS::S3::Bucket").items():
        props = bucket["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), logical
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
        assert bucket["DeletionPolicy"] == "Retain"
    for policy in default_app.resources("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_the_main_bucket_is_versioned_logged_and_ages_its_objects(default_app: Synthesized) -> None:
    (bucket,) = [
        r for r in default_app.resources("AWS::S3::Bucket").values() if "LoggingConfiguration" in r["Properties"]
    ]
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-run-logs"]["ExpirationInDays"] == default_app.config.log_retention_days
    assert rules["models-to-cold-tier"]["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
    assert "NoncurrentVersionExpiration" in rules["expire-old-versions"]


def test_the_ledger_is_on_demand_with_ttl_and_point_in_time_recovery(default_app: Synthesized) -> None:
    default_app.assertions.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    "BillingMode": "PAY_PER_REQUEST",
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_the_topic_requires_tls(default_app: Synthesized) -> None:
    (policy,) = default_app.resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s.get("Condition")) for s in statements)


def test_every_taggable_resource_carries_the_app_and_environment_tags(default_app: Synthesized) -> None:
    expected = [{"Key": "ec2ops:app", "Value": "ec2ops"}, {"Key": "ec2ops:environment", "Value": "dev"}]
    tagged = [r for r in default_app.template["Resources"].values() if "Tags" in r.get("Properties", {})]
    assert len(tagged) > 20
    for resource in tagged:
        tags = resource["Properties"]["Tags"]
        assert all(tag in tags for tag in expected), resource["Type"]


def test_the_dashboard_shows_executions_and_lambda_errors(default_app: Synthesized) -> None:
    (dashboard,) = default_app.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "Errors"):
        assert metric in body
