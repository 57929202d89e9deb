"""The launch loop on a scripted EC2: which errors move to the next pool, which end spot, which are retried."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ec2ops_lambda import clock
from ec2ops_lambda.aws.spot_ec2 import Observed
from ec2ops_lambda.errors import ReplacementFailed
from ec2ops_lambda.models.spot import ChooseResult, Incident, PoolOption, SourceInstance
from ec2ops_lambda.spot import launch as launch_logic
from ec2ops_lambda.spot.pool_choice import Pool

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def utcnow(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(clock, "utcnow", fake.utcnow)
    monkeypatch.setattr(clock, "sleep", fake.sleep)
    yield fake


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"scripted {code}"}}, "RunInstances")


@dataclass
class ScriptedEc2:
    """RunInstances answers from a script (an error code or 'ok'); instances run after `pending_polls` looks."""

    script: list[str]
    pending_polls: int = 1
    lose_at_launch: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)

    def run_instance(self, request: dict[str, Any]) -> str:
        self.requests.append(request)
        answer = self.script.pop(0) if self.script else "ok"
        if answer != "ok":
            raise error(answer)
        return f"i-{len(self.requests):017x}"

    def observe(self, instance_id: str) -> Observed:
        self.polls[instance_id] = self.polls.get(instance_id, 0) + 1
        if self.lose_at_launch:
            return Observed("terminated", "Server.SpotInstanceTermination", "no capacity after all")
        return Observed("running" if self.polls[instance_id] > self.pending_polls else "pending")

    def terminate(self, instance_id: str) -> None:
        self.terminated.append(instance_id)


@dataclass
class Marks:
    marked: list[tuple[str, str]] = field(default_factory=list)

    def mark(
        self, pool: Pool, *, reason: str, at: datetime, until: datetime, change_id: str, execution_id: str
    ) -> None:
        assert until > at
        self.marked.append((pool.name, reason))


SOURCE = SourceInstance(
    instance_id="i-0123456789abcdef0",
    instance_type="m5.large",
    availability_zone="us-east-1a",
    subnet_id="subnet-a",
    vpc_id="vpc-1",
    image_id="ami-1",
    architecture="x86_64",
    security_group_ids=["sg-1"],
    instance_profile_arn="arn:aws:iam::123456789012:instance-profile/web",
    user_data=base64.b64encode(b"#!/bin/bash\necho hi\n").decode(),
    tags={"ec2ops:managed": "true", "ec2ops:failover": "replace", "Name": "web-1", "ec2ops:role": "primary"},
    market="spot",
    state="running",
    policy="replace",
)
INCIDENT = Incident(
    instance_id=SOURCE.instance_id,
    execution_id="arn:exec:1",
    change_id="exec-1",
    signal_kind="interruption-warning",
    signal_action="terminate",
    notice_time=START,
)


def option(instance_type: str, zone: str, spot: float = 0.03, on_demand: float = 0.096) -> PoolOption:
    return PoolOption(
        instance_type=instance_type,
        availability_zone=zone,
        subnet_id=f"subnet-{zone[-1]}",
        spot_price=spot,
        on_demand_price=on_demand,
    )


CHOICE = ChooseResult(
    ranked=[],
    spot_order=[option("m5a.large", "us-east-1b"), option("m5.large", "us-east-1b")],
    on_demand_order=[option("m5a.large", "us-east-1a", on_demand=0.086)],
    interrupted_pool="m5.large/us-east-1a",
    price_source="bundled-table",
)


def run(ec2: ScriptedEc2, marks: Marks, deadline: int = 100) -> launch_logic.LaunchResult:
    return launch_logic.launch(
        SOURCE,
        INCIDENT,
        CHOICE,
        role="primary",
        ec2=ec2,
        pools=marks,
        deadline_seconds=deadline,
        poll_seconds=2,
        bad_pool_minutes=60,
    )


def test_the_best_pool_first_with_the_old_launch_configuration(fake_clock: FakeClock) -> None:
    ec2, marks = ScriptedEc2([]), Marks()
    result = run(ec2, marks)
    (request,) = ec2.requests
    assert (request["InstanceType"], request["SubnetId"]) == ("m5a.large", "subnet-b")
    assert request["ImageId"] == "ami-1" and request["SecurityGroupIds"] == ["sg-1"]
    assert request["IamInstanceProfile"] == {"Arn": SOURCE.instance_profile_arn}
    assert request["UserData"] == b"#!/bin/bash\necho hi\n", "boto3 encodes it: pass the bytes, not base64 text"
    assert request["InstanceMarketOptions"]["MarketType"] == "spot"
    tags = {t["Key"]: t["Value"] for t in request["TagSpecifications"][0]["Tags"]}
    assert tags["ec2ops:replaces"] == SOURCE.instance_id and tags["ec2ops:role"] == "primary"
    assert tags["Name"] == "web-1" and tags["ec2ops:managed"] == "true"
    assert (result.market, result.hourly_price, result.on_demand_price) == ("spot", 0.03, 0.096)
    assert [a.outcome for a in result.attempts] == ["running"]
    assert marks.marked == []


def test_the_client_token_depends_on_incident_pool_and_market_only() -> None:
    a = launch_logic.client_token(INCIDENT, option("m5a.large", "us-east-1b"), "spot")
    assert a == launch_logic.client_token(INCIDENT, option("m5a.large", "us-east-1b", spot=0.5), "spot")
    assert a != launch_logic.client_token(INCIDENT, option("m5a.large", "us-east-1b"), "on-demand")
    assert a != launch_logic.client_token(INCIDENT, option("m5.large", "us-east-1b"), "spot")
    other = INCIDENT.model_copy(update={"change_id": "exec-2"})
    assert a != launch_logic.client_token(other, option("m5a.large", "us-east-1b"), "spot")
    assert len(a) <= 64


@pytest.mark.parametrize("code", sorted(launch_logic.POOL_ERRORS))
def test_a_pool_error_marks_the_pool_and_moves_on_at_once(fake_clock: FakeClock, code: str) -> None:
    ec2, marks = ScriptedEc2([code]), Marks()
    result = run(ec2, marks)
    assert [r["InstanceType"] + "/" + r["SubnetId"] for r in ec2.requests] == [
        "m5a.large/subnet-b",
        "m5.large/subnet-b",
    ]
    assert marks.marked == [("m5a.large/us-east-1b", f"spot launch failed: {code}")]
    assert [a.outcome for a in result.attempts] == ["pool-failed", "running"]
    assert fake_clock.slept.count(2) <= 1, "no sleep-retry of the failed pool"


@pytest.mark.parametrize("code", sorted(launch_logic.ACCOUNT_SPOT_ERRORS))
def test_an_account_wide_spot_error_goes_to_on_demand_at_once(fake_clock: FakeClock, code: str) -> None:
    ec2, marks = ScriptedEc2([code]), Marks()
    result = run(ec2, marks)
    assert len(ec2.requests) == 2
    assert "InstanceMarketOptions" not in ec2.requests[1]
    assert (result.market, result.hourly_price) == ("on-demand", 0.086)
    assert result.fell_back_because is not None and result.fell_back_because.startswith(code)
    assert marks.marked == [], "an account limit is no pool's fault"


def test_throttling_backs_off_with_jitter_on_the_same_pool(fake_clock: FakeClock) -> None:
    ec2, marks = ScriptedEc2(["RequestLimitExceeded", "RequestLimitExceeded"]), Marks()
    result = run(ec2, marks)
    assert len({r["ClientToken"] for r in ec2.requests}) == 1, "the same pool, the same token"
    assert [a.outcome for a in result.attempts] == ["throttled", "throttled", "running"]
    backoffs = fake_clock.slept[:2]
    assert 0 <= backoffs[0] <= 0.5 and 0 <= backoffs[1] <= 1.0


def test_a_spot_instance_lost_while_pending_counts_against_its_pool(fake_clock: FakeClock) -> None:
    ec2, marks = ScriptedEc2([], lose_at_launch=True), Marks()
    with pytest.raises(ReplacementFailed, match="no pool gave"):
        run(ec2, marks)
    assert [name for name, _ in marks.marked] == ["m5a.large/us-east-1b", "m5.large/us-east-1b", "m5a.large/us-east-1a"]
    assert len(ec2.terminated) == 3, "each lost instance is cleaned up"


def test_a_replacement_still_pending_at_the_deadline_is_terminated(fake_clock: FakeClock) -> None:
    ec2, marks = ScriptedEc2([], pending_polls=1000), Marks()
    with pytest.raises(ReplacementFailed, match="still pending at the deadline"):
        run(ec2, marks, deadline=10)
    assert ec2.terminated == ["i-00000000000000001"]


def test_an_error_no_pool_can_fix_stops_at_once(fake_clock: FakeClock) -> None:
    ec2, marks = ScriptedEc2(["InvalidAMIID.NotFound"]), Marks()
    with pytest.raises(ReplacementFailed, match=r"InvalidAMIID\.NotFound") as raised:
        run(ec2, marks)
    assert "will not get better in another pool" in str(raised.value)
    assert len(ec2.requests) == 1
