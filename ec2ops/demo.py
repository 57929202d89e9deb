"""`make demo`: deploy the synthesized app into ec2ops.local, run it, and tell what happened in plain words."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from ec2ops.local import ExecutionResult, LocalCloud
from ec2ops.local.cloud import quiet_moto_logs


def say(text: str = "") -> None:
    """Print, keeping a multi-line text under its first line's indent."""
    indent = " " * (len(text) - len(text.lstrip()))
    print(text.replace("\n", "\n" + indent + "   "), flush=True)


def readable_cause(cause: str | None) -> str:
    """A Lambda error's cause is the runtime's JSON (message, type, stack); people read the message."""
    try:
        parsed = json.loads(cause or "")
    except ValueError:
        return cause or ""
    return str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else str(cause)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def describe_run(result: ExecutionResult) -> None:
    counts = result.counts
    polls = counts.states_entered.get("WaitForSnapshots", 0)
    invocations = ", ".join(
        f"{name.removeprefix('ec2ops-snapshot-')} x{n}" for name, n in counts.lambda_invocations.items()
    )
    say(f"   execution {result.name}: {result.status}")
    say(
        f"   {counts.state_transitions} state transitions, {polls} polls while EBS worked, "
        f"{sum(counts.lambda_invocations.values())} Lambda invocations ({invocations})"
    )
    say(f"   AWS calls: {', '.join(f'{k} x{v}' for k, v in sorted(counts.api_calls.items()))}")
    if result.status != "SUCCEEDED":
        say(f"   error: {result.error}")
        say(f"   cause: {readable_cause(result.cause)}")


def list_snapshots(cloud: LocalCloud, instance_id: str) -> None:
    snapshots = cloud.ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:ec2ops:instance-id", "Values": [instance_id]}]
    )["Snapshots"]
    for snapshot in sorted(snapshots, key=lambda s: s["StartTime"]):
        tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
        say(
            f"   {snapshot['SnapshotId']}  {snapshot['VolumeSize']:>4} GiB  {snapshot['State']:<9} "
            f"set {tags.get('ec2ops:change-id')}  taken {snapshot['StartTime']:%Y-%m-%d %H:%M}"
        )


def show_ledger(items: Iterable[dict[str, Any]]) -> None:
    for item in items:
        say(f"   {item['at']}  {item['kind']:<16} {item['what']}")


def main() -> int:
    quiet_moto_logs()
    with LocalCloud() as cloud:
        heading("Deployed the synthesized app (cdk.out) into ec2ops.local")
        for name, deployment in cloud.deployments.items():
            created = len(deployment.physical) - len(deployment.skipped)
            say(
                f"   stack {name}: {created} resources created, "
                f"{len(deployment.skipped)} recorded only ({', '.join(sorted(set(deployment.skipped.values())))})"
            )
            say(f"   state machines: {', '.join(sorted(deployment.state_machines))}")
            say(f"   Lambda functions (run in-process): {', '.join(sorted(deployment.functions))}")
        say(f"   ledger table {cloud.ledger_table}, topic {cloud.topic_arn.split(':')[-1]}")

        heading("A managed t3.2xlarge with a 100 GiB data volume")
        iid = cloud.launch_instance("t3.2xlarge", extra_volumes_gib=(100,), tags={"Name": "build-box"})
        say(f"   {iid} running in {cloud.instance(iid)['Placement']['AvailabilityZone']}, tagged ec2ops:managed=true")

        heading("Snapshot it on three days, keeping the newest 2 sets")
        for day in range(3):
            result = cloud.run(
                "snapshot",
                {
                    "instance_id": iid,
                    "reason": f"nightly backup, day {day + 1}",
                    "retain": {"count": 2, "days": None},
                },
                name=f"nightly-day-{day + 1}",
            )
            describe_run(result)
            if result.output:
                say(f"   -> {result.output['message']}")
            cloud.clock.advance(days=1)
        say("   snapshots of the instance now (the day-1 set was pruned):")
        list_snapshots(cloud, iid)

        heading("Refused before anything is touched: an instance without ec2ops:managed=true")
        other = cloud.launch_instance("t3.large", managed=False)
        describe_run(cloud.run("snapshot", {"instance_id": other, "reason": "not ours"}, name="refused"))

        heading("A snapshot that ends in `error` (injected): the incomplete set is removed")
        cloud.fail_next_snapshots(times=1, message="Snapshot failed: volume I/O error (injected)")
        describe_run(cloud.run("snapshot", {"instance_id": iid, "reason": "before upgrade"}, name="broken-ebs"))
        list_snapshots(cloud, iid)

        heading("The ledger (DynamoDB) for the instance")
        show_ledger(cloud.ledger_items(f"instance#{iid}"))

        heading("Notifications published on the SNS topic")
        for note in cloud.notifications():
            say(f"   [{note['subject']}] {note['message'].splitlines()[0]}")
        say()
        say(
            f"Emulator clock: {cloud.clock.now():%Y-%m-%d %H:%M} UTC; "
            f"AWS calls in all: {sum(cloud.counter.total.values())}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
