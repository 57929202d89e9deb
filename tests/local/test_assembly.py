"""The template deployer: intrinsics resolve as CloudFormation resolves them, order follows references."""

from __future__ import annotations

from pathlib import Path

import pytest

from ec2ops.local import LocalCloud
from ec2ops.local.assembly import AssemblyError, Deployment, Resolver, dependency_order, read_assembly
from tests.local.probe_app import FUNCTIONS


def resolver(**physical: str) -> Resolver:
    deployment = Deployment(
        "stack",
        {"Parameters": {"Env": {"Default": "dev"}}, "Conditions": {"IsDev": {"Fn::Equals": [{"Ref": "Env"}, "dev"]}}},
    )
    deployment.physical.update(physical)
    deployment.attributes["Role"] = {"Arn": "arn:aws:iam::123456789012:role/r"}
    return Resolver(deployment, "us-east-1", ["us-east-1a", "us-east-1b"])


def test_intrinsics_resolve_like_cloudformation() -> None:
    r = resolver(Bucket="my-bucket")
    assert r.resolve({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Bucket"}]]}) == (
        "arn:aws:s3:::my-bucket"
    )
    assert r.resolve({"Fn::Sub": "${AWS::Region}/${Bucket}/${Role.Arn}"}) == (
        "us-east-1/my-bucket/arn:aws:iam::123456789012:role/r"
    )
    assert r.resolve({"Fn::Sub": ["${X}-${!Literal}", {"X": {"Ref": "Env"}}]}) == "dev-${!Literal}"
    assert r.resolve({"Fn::Select": [1, {"Fn::GetAZs": ""}]}) == "us-east-1b"
    assert r.resolve({"Fn::If": ["IsDev", "a", "b"]}) == "a"
    assert r.resolve({"Fn::Split": [",", "a,b"]}) == ["a", "b"]
    assert r.resolve({"K": {"Ref": "AWS::NoValue"}, "L": [1, {"Ref": "AWS::NoValue"}]}) == {"L": [1]}


def test_an_unknown_reference_is_a_clear_error() -> None:
    with pytest.raises(AssemblyError, match="Ref to Missing"):
        resolver().resolve({"Ref": "Missing"})


def test_resources_come_after_what_they_reference() -> None:
    order = dependency_order(
        {
            "Machine": {"Properties": {"RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}},
            "Role": {"Properties": {}},
            "Policy": {"Properties": {"Roles": [{"Ref": "Role"}]}, "DependsOn": "Machine"},
        }
    )
    assert order.index("Role") < order.index("Machine") < order.index("Policy")


def test_a_missing_cloud_assembly_says_to_synthesize(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="make synth"):
        read_assembly(tmp_path)


def test_a_stale_lambda_asset_is_refused(probe_assembly: Path, tmp_path: Path) -> None:
    changed = tmp_path / "functions"
    changed.mkdir()
    (changed / "probe_handlers.py").write_text((FUNCTIONS / "probe_handlers.py").read_text() + "\n# edited\n")
    with pytest.raises(AssemblyError, match="stale"), LocalCloud(probe_assembly, lambda_source=changed):
        pass


def test_the_probe_app_deploys_every_resource_it_declares(cloud: LocalCloud) -> None:
    deployment = cloud.app
    assert set(deployment.state_machines) == {
        "ec2ops-probe-stop",
        "ec2ops-probe-start",
        "ec2ops-probe-echo",
        "ec2ops-probe-describe",
        "ec2ops-probe-parent",
    }
    assert deployment.skipped == {}
    assert set(deployment.functions) == {"probe-start"}
