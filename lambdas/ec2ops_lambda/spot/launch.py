"""Launch: get one replacement running before the deadline, trying pools in Choose's order.

How each error is handled follows notes/ec2-failures.md ("Launching replacement capacity"):
- a pool's own errors (capacity, unsupported, no free addresses) mark the pool bad in the ledger and move on at once
  (sleep-retrying the same pool inside two minutes wastes them);
- account-wide spot errors (spot quota, vCPU quota, max price, the spot service-linked role) end spot at once: the
  on-demand order is tried, and the reason is kept for the record;
- throttling is retried with exponential backoff and full jitter, never past the deadline;
- a spot instance that EC2 takes back while `pending` counts as a pool failure;
- any other error (a bad AMI, a missing permission, a reused token) stops the launch: it will not get better
  elsewhere.
Every RunInstances carries a ClientToken derived from the incident, the pool and the market, so a retried Lambda
gets the instance it already launched instead of a second one. A replacement that is not running by the deadline is
terminated before the step fails: nothing is left billing that no one will promote.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.spot_ec2 import Observed
from ec2ops_lambda.errors import ReplacementFailed
from ec2ops_lambda.models.spot import Attempt, ChooseResult, Incident, LaunchResult, Market, PoolOption, SourceInstance
from ec2ops_lambda.spot.pool_choice import Pool

POOL_ERRORS = frozenset(
    {"InsufficientInstanceCapacity", "UnfulfillableCapacity", "Unsupported", "InsufficientFreeAddressesInSubnet"}
)
ACCOUNT_SPOT_ERRORS = frozenset(
    {
        "MaxSpotInstanceCountExceeded",
        "VcpuLimitExceeded",
        "SpotMaxPriceTooLow",
        "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
    }
)
ON_DEMAND_QUOTA_ERRORS = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded"})
THROTTLING_ERRORS = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
ROLE_TAG = "ec2ops:role"
REPLACES_TAG = "ec2ops:replaces"
INCIDENT_TAG = "ec2ops:incident"
REPLACED_BY_TAG = "ec2ops:replaced-by"
INTERRUPTED_AT_TAG = "ec2ops:interrupted-at"
_NOT_COPIED = frozenset({ROLE_TAG, REPLACES_TAG, INCIDENT_TAG, REPLACED_BY_TAG, INTERRUPTED_AT_TAG})


class LaunchEc2(Protocol):
    """The EC2 calls Launch makes (SpotEc2 on AWS)."""

    def run_instance(self, request: dict[str, Any]) -> str: ...

    def observe(self, instance_id: str) -> Observed: ...

    def terminate(self, instance_id: str) -> None: ...


class PoolMarker(Protocol):
    """Where bad pools are remembered (BadPools on AWS)."""

    def mark(
        self, pool: Pool, *, reason: str, at: datetime, until: datetime, change_id: str, execution_id: str
    ) -> None: ...


def client_token(incident: Incident, option: PoolOption, market: Market) -> str:
    """Same incident, pool and market: same token (EC2 returns the instance it launched); otherwise a new one."""
    seed = f"{incident.instance_id}|{incident.change_id}|{option.name}|{market}"
    return "ec2ops-" + hashlib.sha256(seed.encode()).hexdigest()[:48]


def replacement_tags(source: SourceInstance, incident: Incident, role: str) -> dict[str, str]:
    """The old instance's tags (its opt-in and policy too, so the replacement is protected the same way), the
    role, and where it came from."""
    tags = {key: value for key, value in source.tags.items() if key not in _NOT_COPIED}
    tags.update({ROLE_TAG: role, REPLACES_TAG: source.instance_id, INCIDENT_TAG: incident.change_id})
    return tags


def run_request(
    source: SourceInstance, incident: Incident, option: PoolOption, market: Market, role: str
) -> dict[str, Any]:
    """RunInstances for the replacement: the old launch configuration in the chosen pool."""
    tags = [{"Key": key, "Value": value} for key, value in sorted(replacement_tags(source, incident, role).items())]
    request: dict[str, Any] = {
        "ImageId": source.image_id,
        "InstanceType": option.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": option.subnet_id,
        "ClientToken": client_token(incident, option, market),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        "MetadataOptions": {"HttpTokens": source.http_tokens or "required", "HttpEndpoint": "enabled"},
    }
    if source.security_group_ids:
        request["SecurityGroupIds"] = list(source.security_group_ids)
    if source.instance_profile_arn:
        request["IamInstanceProfile"] = {"Arn": source.instance_profile_arn}
    if source.key_name:
        request["KeyName"] = source.key_name
    if source.user_data:
        # boto3 base64-encodes UserData itself: hand it the bytes EC2 keeps, not their base64 text.
        request["UserData"] = base64.b64decode(source.user_data)
    if market == "spot":
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    return request


@dataclass
class LaunchRun:
    """One Launch invocation: its deadline, its attempts, and where it stands."""

    source: SourceInstance
    incident: Incident
    role: Literal["primary", "standby"]
    ec2: LaunchEc2
    pools: PoolMarker
    deadline: datetime
    poll_seconds: float
    bad_pool_minutes: int
    jitter: random.Random
    attempts: list[Attempt] = field(default_factory=list)
    fell_back_because: str | None = None

    def note(self, option: PoolOption, market: Market, outcome: Any, code: str | None, message: str | None) -> None:
        self.attempts.append(
            Attempt(pool=option.name, market=market, outcome=outcome, code=code, message=message, at=clock.utcnow())
        )

    def mark_bad(self, option: PoolOption, market: Market, reason: str) -> None:
        now = clock.utcnow()
        self.pools.mark(
            Pool(option.instance_type, option.availability_zone),
            reason=f"{market} launch failed: {reason}",
            at=now,
            until=now + timedelta(minutes=self.bad_pool_minutes),
            change_id=self.incident.change_id,
            execution_id=self.incident.execution_id,
        )

    def time_left(self) -> float:
        return (self.deadline - clock.utcnow()).total_seconds()

    def try_pool(self, option: PoolOption, market: Market) -> LaunchResult | Literal["next", "spot-unavailable"]:
        """One pool: launch (retrying throttling), then wait for `running`."""
        request = run_request(self.source, self.incident, option, market, self.role)
        throttled = 0
        while True:
            try:
                instance_id = self.ec2.run_instance(request)
                break
            except ClientError as error:
                code = error_code(error)
                message = str(error.response.get("Error", {}).get("Message", ""))
                if code in THROTTLING_ERRORS:
                    delay = self.jitter.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**throttled))
                    if delay >= self.time_left():
                        self.note(option, market, "deadline", code, "throttled, and no time left to back off")
                        return "next"
                    throttled += 1
                    self.note(option, market, "throttled", code, f"retrying in {delay:.2f} s")
                    clock.sleep(delay)
                    continue
                if market == "spot" and code in ACCOUNT_SPOT_ERRORS:
                    self.note(option, market, "spot-unavailable", code, message)
                    self.fell_back_because = f"{code}: {message}"
                    return "spot-unavailable"
                if code in POOL_ERRORS or (market == "on-demand" and code in ON_DEMAND_QUOTA_ERRORS):
                    self.note(option, market, "pool-failed", code, message)
                    if code in POOL_ERRORS:
                        self.mark_bad(option, market, code)
                    return "next"
                raise ReplacementFailed(
                    f"RunInstances in {option.name} ({market}) failed with {code}: {message}. This will not get "
                    f"better in another pool; nothing was launched by this attempt. Attempts: {self.summary()}"
                ) from None
        launched_at = clock.utcnow()
        return self.wait_running(instance_id, option, market, launched_at)

    def wait_running(
        self, instance_id: str, option: PoolOption, market: Market, launched_at: datetime
    ) -> LaunchResult | Literal["next"]:
        while True:
            seen = self.ec2.observe(instance_id)
            if seen.state == "running":
                self.note(option, market, "running", None, instance_id)
                return LaunchResult(
                    instance_id=instance_id,
                    instance_type=option.instance_type,
                    availability_zone=option.availability_zone,
                    market=market,
                    hourly_price=option.spot_price if market == "spot" else option.on_demand_price,
                    on_demand_price=option.on_demand_price,
                    client_token=client_token(self.incident, option, market),
                    launched_at=launched_at,
                    running_at=clock.utcnow(),
                    attempts=list(self.attempts),
                    fell_back_because=self.fell_back_because,
                )
            if seen.state in GONE_STATES:
                reason = f"{instance_id} went {seen.state} while pending ({seen.reason_code}: {seen.reason_message})"
                self.note(option, market, "lost-at-launch", seen.reason_code, reason)
                self.mark_bad(option, market, reason)
                self.ec2.terminate(instance_id)
                return "next"
            if self.time_left() <= 0:
                self.ec2.terminate(instance_id)
                self.note(option, market, "deadline", None, f"{instance_id} still {seen.state}: terminated")
                raise ReplacementFailed(
                    f"the replacement {instance_id} in {option.name} ({market}) was still {seen.state} at the "
                    f"deadline; it was terminated so nothing is left billing. Attempts: {self.summary()}"
                )
            clock.sleep(min(self.poll_seconds, max(self.time_left(), 0.1)))

    def summary(self) -> str:
        return (
            "; ".join(f"{a.pool} {a.market} {a.outcome}" + (f" ({a.code})" if a.code else "") for a in self.attempts)
            or "none"
        )


def launch(
    source: SourceInstance,
    incident: Incident,
    choice: ChooseResult,
    *,
    role: Literal["primary", "standby"],
    ec2: LaunchEc2,
    pools: PoolMarker,
    deadline_seconds: int,
    poll_seconds: float,
    bad_pool_minutes: int,
) -> LaunchResult:
    """Spot pools best first; on an account-wide spot error or when they run out, on-demand cheapest first."""
    run = LaunchRun(
        source=source,
        incident=incident,
        role=role,
        ec2=ec2,
        pools=pools,
        deadline=clock.utcnow() + timedelta(seconds=deadline_seconds),
        poll_seconds=poll_seconds,
        bad_pool_minutes=bad_pool_minutes,
        jitter=random.Random(incident.change_id),
    )
    for market, options in (("spot", choice.spot_order), ("on-demand", choice.on_demand_order)):
        if market == "on-demand" and run.fell_back_because is None:
            run.fell_back_because = (
                "every spot pool failed or was excluded" if choice.spot_order else "no spot pool was eligible"
            )
        for option in options:
            if run.time_left() <= 0:
                raise ReplacementFailed(
                    f"no replacement was running {deadline_seconds} s after Launch started; nothing is left "
                    f"running. Attempts: {run.summary()}"
                )
            outcome = run.try_pool(option, market)  # type: ignore[arg-type]
            if isinstance(outcome, LaunchResult):
                return outcome
            if outcome == "spot-unavailable":
                break
    raise ReplacementFailed(
        f"no pool gave {source.instance_id} a replacement, spot or on-demand; nothing is left running. "
        f"Attempts: {run.summary()}. Candidates are the type and its alternates (tag ec2ops:alternate-types) in the "
        "AZs with a subnet of the instance's VPC."
    )
