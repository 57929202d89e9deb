"""`make demo`: deploy the synthesized app into ec2ops.local, run it, and tell what happened in plain words."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from ec2ops.local import ExecutionResult, LocalCloud
from ec2ops.local.cloud import REPO_ROOT, quiet_moto_logs


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


def describe_run(result: ExecutionResult, *, wait_state: str = "WaitForSnapshots", waited_for: str = "EBS") -> None:
    counts = result.counts
    polls = counts.states_entered.get(wait_state, 0)
    invocations = ", ".join(
        f"{name.removeprefix('ec2ops-').split('-', 1)[-1]} x{n}" for name, n in counts.lambda_invocations.items()
    )
    say(f"   execution {result.name}: {result.status}")
    say(
        f"   {counts.state_transitions} state transitions, {polls} polls while {waited_for} worked, "
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


def show_instance(cloud: LocalCloud, instance_id: str) -> None:
    instance = cloud.instance(instance_id)
    say(
        f"   {instance_id} is {instance['State']['Name']} as {instance['InstanceType']}; "
        f"states since launch: {' -> '.join(cloud.instance_history(instance_id))}"
    )


def resize_story(cloud: LocalCloud, iid: str) -> None:
    """The upgrade-for-a-phase story of docs/resize.md, then a rollback."""
    heading("Dry run: what would t3.2xlarge -> c7i.8xlarge do?")
    planned = cloud.run(
        "resize",
        {"instance_id": iid, "target_type": "c7i.8xlarge", "dry_run": True, "reason": "phase 2 needs 32 vCPUs"},
        name="phase-2-dry-run",
    )
    say(f"   {planned.output['plan']['summary']}")

    heading("Resize for the heavy phase: snapshot first, c6i.8xlarge as fallback, back down after 55 h")
    say("   (injected: no c7i.8xlarge capacity at the first start)")
    cloud.inject_fault("ec2", "StartInstances", "InsufficientInstanceCapacity")
    result = cloud.run(
        "resize",
        {
            "instance_id": iid,
            "target_type": "c7i.8xlarge",
            "fallback_types": ["c6i.8xlarge"],
            "snapshot": True,
            "revert_after_hours": 55,
            "reason": "phase 2 needs 32 vCPUs",
        },
        name="phase-2",
    )
    describe_run(result, wait_state="WaitPoll", waited_for="EC2")
    if result.output:
        say(f"   -> {result.output['message']}")
    show_instance(cloud, iid)

    heading("55 hours later, the scheduled revert runs by itself")
    cloud.clock.advance(hours=55, minutes=1)
    for revert in [
        r
        for r in cloud.wait_all()
        if r.state_machine == "ec2ops-resize" and r.arn != result.arn and r.name not in ("phase-2-dry-run",)
    ]:
        describe_run(revert, wait_state="WaitPoll", waited_for="EC2")
    show_instance(cloud, iid)

    heading("A resize whose status checks fail (injected) rolls back")
    cloud.impair_next_start(instance_id=iid)
    failed = cloud.run(
        "resize",
        {"instance_id": iid, "target_type": "m7i.2xlarge", "snapshot": False, "reason": "try m7i"},
        name="try-m7i",
    )
    describe_run(failed, wait_state="WaitPoll", waited_for="EC2")
    show_instance(cloud, iid)


def spot_story(cloud: LocalCloud) -> None:
    """A managed spot instance reclaimed by AWS: the published warning event, a capacity error, the switch."""
    heading("A managed spot m5.large with an Elastic IP, ec2ops:failover=replace")
    iid = cloud.launch_instance(
        "m5.large", market="spot", availability_zone="us-east-1a", tags={"ec2ops:failover": "replace", "Name": "api-1"}
    )
    allocation = cloud.ec2.allocate_address(Domain="vpc")["AllocationId"]
    cloud.ec2.associate_address(AllocationId=allocation, InstanceId=iid)
    say(f"   {iid} spot in us-east-1a, Elastic IP {cloud.ec2.describe_addresses()['Addresses'][0]['PublicIp']}")

    heading("AWS sends the published interruption warning; the best pool has no capacity (injected)")
    event = json.loads(
        (REPO_ROOT / "tests/fixtures/aws-events/spot-interruption-warning.json")
        .read_text()
        .replace("i-1234567890abcdef0", iid)
    )
    cloud.inject_fault("ec2", "RunInstances", "InsufficientInstanceCapacity", message="no spot capacity (injected)")
    for arn in cloud.put_event(event):
        result = cloud.wait(arn)
        say(f"   execution {result.name}: {result.status}")
        if result.output:
            say("   -> " + result.output["message"])
    (switch,) = [item for item in cloud.ledger_items(f"instance#{iid}") if item["kind"] == "spot-switch"]
    say("   ranking (top 3 of the decision kept in the ledger):")
    for entry in switch["detail"]["ranking"][:3]:
        parts = ", ".join(f"{name} {float(value):.2f}" for name, value in entry["parts"].items())
        say(f"     #{entry['rank']} {entry['pool']}: total {float(entry['total']):.3f} ({parts})")
    say(
        "   bad pools remembered: "
        + ", ".join(f"{m['pool']} ({m['reason']})" for m in cloud.ledger_items("spot-pools"))
    )

    heading("The same warning delivered again: nothing more is launched")
    for arn in cloud.put_event(event):
        say("   -> " + str(cloud.wait(arn).output["message"]))


def training_story() -> None:
    """A training run with the instance side for real: user data runs as a local process against this emulator."""
    heading("A training run: the instance's user data runs here as a local process (bootstrap.sh, the real scripts)")
    with LocalCloud(run_user_data=True, instance_env={"EC2OPS_MIN_FREE_GB": "0"}) as cloud:
        bucket = cloud.app.function_environment("ec2ops-training-run-launch")["TRAINING_BUCKET"]
        cloud.s3.put_object(
            Bucket=bucket,
            Key="cached-datasets/scripts/train.py",
            Body=(REPO_ROOT / "examples" / "train_tiny.py").read_bytes(),
        )
        say("   uploaded examples/train_tiny.py as cached-datasets/scripts/train.py (a CPU job of a few seconds)")
        request = {
            "env": "dev",
            "instance_type": "g4dn.2xlarge",
            "market": "spot",
            "max_runtime_hours": 1,
            "command": ["python3", "train.py", "--epochs", "3"],
            "training_config": {"prediction_length": 64, "context_length": 512},
        }
        say(f"   input: {json.dumps(request)}")
        arn = cloud.start("training-run", request, name="demo-run")
        result = cloud.wait(arn, timeout=180)
        describe_run(result, wait_state="RunInstance", waited_for="the instance")
        if result.output:
            say("   -> " + result.output["message"])
            prefix = f"dev/{result.output['run_id']}/"
            listed = cloud.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            say(f"   s3://{bucket}/{prefix}: " + ", ".join(sorted(o["Key"].removeprefix(prefix) for o in listed)))
            for iid in result.output["terminated"] or []:
                say(f"   {iid}: {cloud.instance(iid)['State']['Name']}")


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

        resize_story(cloud, iid)
        spot_story(cloud)

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
    training_story()  # a fresh emulator: this one runs the instances' user data
    return 0


if __name__ == "__main__":
    sys.exit(main())
