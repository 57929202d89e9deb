"""The fake instance metadata service answers instance scripts as IMDSv2 does (token, 401, 404 until notices)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ec2ops.local.clock import EmulatorClock
from ec2ops.local.imds import InstanceMetadata, MetadataServer

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(START)


@pytest.fixture
def metadata() -> InstanceMetadata:
    return InstanceMetadata(
        instance_id="i-0123456789abcdef0",
        instance_type="g5.xlarge",
        availability_zone="us-east-1b",
        ami_id="ami-0abc",
        user_data=b"#!/bin/bash\necho hello\n",
        iam_role_name="ec2ops-training",
        market="spot",
        launch_time=START - timedelta(minutes=5),
    )


@pytest.fixture
def imds(metadata: InstanceMetadata, clock: EmulatorClock) -> Iterator[MetadataServer]:
    with MetadataServer(metadata, clock=clock.now) as server:
        yield server


def _call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _token(imds: MetadataServer, ttl: int = 300) -> str:
    status, body, _ = _call(f"{imds.url}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
    assert status == 200
    return body.decode()


def _get(imds: MetadataServer, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    status, body, response_headers = _call(f"{imds.url}{path}", headers=headers)
    assert response_headers["Content-Type"] == "text/plain"
    return status, body


def test_token_then_get(imds: MetadataServer) -> None:
    status, body, headers = _call(
        f"{imds.url}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    assert status == 200
    assert headers["X-aws-ec2-metadata-token-ttl-seconds"] == "300"
    assert _get(imds, "/latest/meta-data/instance-id", body.decode()) == (200, b"i-0123456789abcdef0")
    assert imds.requests["/latest/api/token"] == 1
    assert imds.requests["/latest/meta-data/instance-id"] == 1


def test_every_get_needs_a_token(imds: MetadataServer) -> None:
    assert _get(imds, "/latest/meta-data/instance-id")[0] == 401
    assert _get(imds, "/latest/meta-data/instance-id", "not-a-token")[0] == 401
    assert _get(imds, "/latest/meta-data/no-such-key")[0] == 401


def test_tokens_expire_on_the_injected_clock(imds: MetadataServer, clock: EmulatorClock) -> None:
    token = _token(imds, ttl=60)
    clock.advance(seconds=59)
    assert _get(imds, "/latest/meta-data/instance-id", token)[0] == 200
    clock.advance(seconds=1)
    assert _get(imds, "/latest/meta-data/instance-id", token)[0] == 401
    assert _get(imds, "/latest/meta-data/instance-id", _token(imds))[0] == 200


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-5", "abc", ""])
def test_token_ttl_must_be_1_to_21600(imds: MetadataServer, ttl: str | None) -> None:
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    assert _call(f"{imds.url}/latest/api/token", "PUT", headers)[0] == 400


def test_token_ttl_max_is_configurable(metadata: InstanceMetadata) -> None:
    with MetadataServer(metadata, token_ttl_max=120) as server:
        assert _call(f"{server.url}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "121"})[0] == 400
        assert _token(server, ttl=120)


def test_a_forwarded_token_request_is_refused(imds: MetadataServer) -> None:
    headers = {"X-aws-ec2-metadata-token-ttl-seconds": "300", "X-Forwarded-For": "203.0.113.7"}
    assert _call(f"{imds.url}/latest/api/token", "PUT", headers)[0] == 403


def test_identity_keys(imds: MetadataServer) -> None:
    token = _token(imds)
    expected = {
        "instance-id": b"i-0123456789abcdef0",
        "instance-type": b"g5.xlarge",
        "ami-id": b"ami-0abc",
        "placement/availability-zone": b"us-east-1b",
        "placement/region": b"us-east-1",
        "instance-life-cycle": b"spot",
    }
    for key, value in expected.items():
        assert _get(imds, f"/latest/meta-data/{key}", token) == (200, value)
    status, ip = _get(imds, "/latest/meta-data/local-ipv4", token)
    assert status == 200
    assert ip.startswith(b"10.0.0.")
    assert _get(imds, "/latest/meta-data/no-such-key", token)[0] == 404
    assert _get(imds, "/latest/nothing-here", token)[0] == 404


def test_meta_data_listing(imds: MetadataServer, metadata: InstanceMetadata) -> None:
    token = _token(imds)
    status, body = _get(imds, "/latest/meta-data/", token)
    assert status == 200
    names = body.decode().split("\n")
    assert {"instance-id", "instance-type", "ami-id", "local-ipv4", "instance-life-cycle"} <= set(names)
    assert {"placement/", "iam/"} <= set(names)
    assert "spot/" not in names
    assert _get(imds, "/latest/meta-data/placement/", token) == (200, b"availability-zone\nregion")
    metadata.announce_interruption("terminate", START)
    assert "spot/" in _get(imds, "/latest/meta-data/", token)[1].decode().split("\n")


def test_spot_instance_action_is_404_until_announced(imds: MetadataServer, metadata: InstanceMetadata) -> None:
    token = _token(imds)
    assert _get(imds, "/latest/meta-data/spot/instance-action", token)[0] == 404
    metadata.announce_interruption("terminate", START + timedelta(minutes=2))
    status, body = _get(imds, "/latest/meta-data/spot/instance-action", token)
    assert status == 200
    assert json.loads(body) == {"action": "terminate", "time": "2024-05-01T12:02:00Z"}
    metadata.clear_notices()
    assert _get(imds, "/latest/meta-data/spot/instance-action", token)[0] == 404


def test_interruption_actions_are_aws_ones(metadata: InstanceMetadata) -> None:
    with pytest.raises(ValueError, match="instance action"):
        metadata.announce_interruption("reboot", START)


def test_rebalance_recommendation(imds: MetadataServer, metadata: InstanceMetadata) -> None:
    token = _token(imds)
    assert _get(imds, "/latest/meta-data/events/recommendations/rebalance", token)[0] == 404
    metadata.announce_rebalance(datetime(2024, 5, 1, 12, 0, 30))  # naive = UTC, the form moto stores
    status, body = _get(imds, "/latest/meta-data/events/recommendations/rebalance", token)
    assert status == 200
    assert json.loads(body) == {"noticeTime": "2024-05-01T12:00:30Z"}


def test_role_credentials(imds: MetadataServer, clock: EmulatorClock) -> None:
    token = _token(imds)
    assert _get(imds, "/latest/meta-data/iam/security-credentials/", token) == (200, b"ec2ops-training")
    status, body = _get(imds, "/latest/meta-data/iam/security-credentials/ec2ops-training", token)
    assert status == 200
    credentials = json.loads(body)
    assert credentials["Code"] == "Success"
    assert credentials["Type"] == "AWS-HMAC"
    assert credentials["AccessKeyId"] == credentials["SecretAccessKey"] == credentials["Token"] == "testing"
    assert credentials["LastUpdated"] == "2024-05-01T12:00:00Z"
    assert credentials["Expiration"] == "2024-05-01T18:00:00Z"
    assert _get(imds, "/latest/meta-data/iam/security-credentials/other-role", token)[0] == 404


def test_no_role_no_iam(clock: EmulatorClock) -> None:
    metadata = InstanceMetadata(instance_id="i-1", instance_type="t3.large", availability_zone="eu-west-1a")
    with MetadataServer(metadata, clock=clock.now) as server:
        token = _token(server)
        assert _get(server, "/latest/meta-data/iam/security-credentials/", token)[0] == 404
        assert _get(server, "/latest/meta-data/instance-life-cycle", token) == (200, b"on-demand")
        assert _get(server, "/latest/meta-data/placement/region", token) == (200, b"eu-west-1")
        assert _get(server, "/latest/user-data", token)[0] == 404


def test_identity_document(imds: MetadataServer) -> None:
    status, body = _get(imds, "/latest/dynamic/instance-identity/document", _token(imds))
    assert status == 200
    document = json.loads(body)
    assert document["instanceId"] == "i-0123456789abcdef0"
    assert document["instanceType"] == "g5.xlarge"
    assert document["availabilityZone"] == "us-east-1b"
    assert document["region"] == "us-east-1"
    assert document["imageId"] == "ami-0abc"
    assert document["accountId"] == "123456789012"
    assert document["architecture"] == "x86_64"
    assert document["pendingTime"] == "2024-05-01T11:55:00Z"


def test_user_data_is_raw_bytes(imds: MetadataServer) -> None:
    assert _get(imds, "/latest/user-data", _token(imds)) == (200, b"#!/bin/bash\necho hello\n")


def test_stop_closes_the_port(metadata: InstanceMetadata) -> None:
    server = MetadataServer(metadata).start()
    url = server.url
    assert _token(server)
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(urllib.request.Request(f"{url}/latest/api/token", method="PUT"), timeout=2)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")
def test_curl_token_dance_as_bootstrap_does(imds: MetadataServer) -> None:
    script = f"""
set -eu
TOKEN=$(curl -sf -X PUT {imds.url}/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" {imds.url}/latest/meta-data/instance-id
"""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == "i-0123456789abcdef0"
    refused = subprocess.run(
        ["curl", "-sf", f"{imds.url}/latest/meta-data/instance-id"], capture_output=True, timeout=30, check=False
    )
    assert refused.returncode == 22  # curl -f: HTTP error (401)
