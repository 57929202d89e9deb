"""User data of launched instances runs as a local process, as on an EC2 instance: its own disk, metadata service
and environment; shutdown applies the instance's shutdown behaviour; a stop, terminate or spot interruption ends it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2ops.local import LocalCloud
from ec2ops.local.cloud import quiet_moto_logs
from ec2ops.local.instances import process_group_alive
from tests.local.probe_app import FUNCTIONS

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
TOKEN = (
    'TOKEN=$(curl -sf -X PUT "$EC2OPS_IMDS_ENDPOINT/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")\n'
)
IMDS_GET = 'curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "$EC2OPS_IMDS_ENDPOINT/latest/'


@pytest.fixture
def running(probe_assembly: Path) -> Iterator[LocalCloud]:
    quiet_moto_logs()
    with LocalCloud(
        probe_assembly, lambda_source=FUNCTIONS, run_user_data=True, instance_env={"EC2OPS_MIN_FREE_GB": "1"}
    ) as local:
        yield local


def launch(cloud: LocalCloud, script: str, **extra: Any) -> str:
    image = cloud.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    instance_id: str = cloud.ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, UserData=script, **extra
    )["Instances"][0]["InstanceId"]
    return instance_id


def state(cloud: LocalCloud, instance_id: str) -> str:
    return str(cloud.instance(instance_id)["State"]["Name"])


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def group_gone(pid: int) -> bool:
    return not process_group_alive(pid)


def test_user_data_runs_with_the_instance_environment_metadata_and_the_embedded_aws(
    running: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2OPS_LEAKED_FROM_THE_TEST", "1")
    running.s3.create_bucket(Bucket="probe-results")
    iam = running.client("iam")
    iam.create_role(RoleName="probe-instance", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="probe-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="probe-profile", RoleName="probe-instance")
    script = (
        "#!/bin/bash\nset -euo pipefail\n"
        "env > env.txt\n"
        + TOKEN
        + IMDS_GET
        + 'meta-data/instance-id" > instance-id.txt\n'
        + IMDS_GET
        + 'meta-data/iam/security-credentials/" > role.txt\n'
        + IMDS_GET
        + 'meta-data/instance-life-cycle" > market.txt\n'
        "command -v python3 > python3.txt\n"
        "python3 -c \"import boto3; boto3.client('s3').put_object("
        "Bucket='probe-results', Key='from-instance', Body=open('instance-id.txt').read())\"\n"
        "echo user data done\n"
    )
    instance_id = launch(running, script, IamInstanceProfile={"Name": "probe-profile"})
    assert state(running, instance_id) == "running"  # booted at once: nobody has to move the clock

    assert running.wait_for_instance_process(instance_id, 30) == 0, running.console_output(instance_id)
    root = running.instance_root(instance_id)
    assert (root / "user-data").read_text() == script
    env = dict(line.split("=", 1) for line in (root / "env.txt").read_text().splitlines() if "=" in line)
    bash_own = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert set(env) - bash_own == {
        "PATH",
        "HOME",
        "EC2OPS_ROOT",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "EC2OPS_IMDS_ENDPOINT",
        "EC2OPS_SKIP_GPU_CHECKS",
        "EC2OPS_MIN_FREE_GB",
    }
    assert env["HOME"] == env["PWD"] == str(root)
    assert env["EC2OPS_ROOT"] == str(root / "opt-ec2ops")
    assert env["PATH"].startswith(f"{root / 'bin'}:")
    assert env["AWS_ENDPOINT_URL"] == running.serve()
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == running.region
    assert env["EC2OPS_SKIP_GPU_CHECKS"] == "1"
    assert env["EC2OPS_MIN_FREE_GB"] == "1"  # instance_env adds and overrides
    assert (root / "instance-id.txt").read_text() == instance_id
    assert (root / "role.txt").read_text().strip() == "probe-instance"
    assert (root / "market.txt").read_text() == "on-demand"
    python3 = Path((root / "python3.txt").read_text().strip())
    assert python3.resolve() == Path(sys.executable).resolve()
    body = running.s3.get_object(Bucket="probe-results", Key="from-instance")["Body"].read()
    assert body.decode() == instance_id
    assert "user data done" in running.console_output(instance_id)
    assert state(running, instance_id) == "running"  # exiting without a shutdown leaves the instance running


@pytest.mark.parametrize(
    ("behaviour", "command", "going", "gone"),
    [
        ("terminate", "shutdown -h now", "shutting-down", "terminated"),
        ("stop", "poweroff", "stopping", "stopped"),
        (None, "halt", "stopping", "stopped"),
    ],
)
def test_a_shutdown_from_the_instance_applies_its_shutdown_behaviour(
    running: LocalCloud, behaviour: str | None, command: str, going: str, gone: str
) -> None:
    extra = {"InstanceInitiatedShutdownBehavior": behaviour} if behaviour else {}
    instance_id = launch(running, f"#!/bin/bash\necho going down\n{command}\nsleep 1000\n", **extra)

    assert running.wait_for_instance_process(instance_id, 15) != 0  # the shutdown ended the script
    described = running.instance(instance_id)
    assert described["State"]["Name"] == going
    assert described["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    running.clock.advance(minutes=2)
    assert state(running, instance_id) == gone
    assert running.instance(instance_id)["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert "going down" in running.console_output(instance_id)


def test_terminating_the_instance_through_the_api_ends_its_processes_and_metadata_service(
    running: LocalCloud,
) -> None:
    import urllib.error
    import urllib.request

    instance_id = launch(running, "#!/bin/bash\necho started\nsleep 1000 &\nsleep 1000\n")
    eventually(lambda: "started" in running.console_output(instance_id))
    process = running.instance_process(instance_id)
    assert process is not None and process.poll() is None
    metadata = running.instances.record(instance_id).server.url

    running.ec2.terminate_instances(InstanceIds=[instance_id])

    assert running.wait_for_instance_process(instance_id, 10) == -15  # SIGTERM, as a shutting-down OS sends
    eventually(lambda: group_gone(process.pid))  # the background sleep too

    def metadata_gone() -> bool:
        try:
            urllib.request.urlopen(f"{metadata}/latest/meta-data/", timeout=1)
        except urllib.error.HTTPError:
            return False  # still answering (401 without a token)
        except OSError:
            return True
        return False

    eventually(metadata_gone)
    assert state(running, instance_id) == "shutting-down"


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(running: LocalCloud) -> None:
    instance_id = launch(running, "#!/bin/bash\ntrap '' TERM\necho started\nwhile true; do sleep 0.1; done\n")
    eventually(lambda: "started" in running.console_output(instance_id))
    running.ec2.stop_instances(InstanceIds=[instance_id])
    started = time.monotonic()
    assert running.wait_for_instance_process(instance_id, 10) == -9
    assert time.monotonic() - started >= 1.5


def test_a_killed_process_leaves_the_instance_running(running: LocalCloud) -> None:
    instance_id = launch(running, "#!/bin/bash\necho started\nsleep 1000\n")
    eventually(lambda: "started" in running.console_output(instance_id))
    running.kill_instance_process(instance_id)
    assert running.wait_for_instance_process(instance_id, 5) == -9
    running.clock.advance(minutes=5)
    assert state(running, instance_id) == "running"  # it died silently: EC2 doesn't know


def test_an_instance_without_user_data_runs_nothing(running: LocalCloud) -> None:
    instance_id = running.launch_instance("t3.micro")
    assert running.instance_process(instance_id) is None
    with pytest.raises(LookupError):
        running.instance_root(instance_id)


SPOT = {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}}}
WATCH_SPOT = (
    "#!/bin/bash\n" + TOKEN + "echo watching\n"
    "for _ in $(seq 1 1000); do\n"
    "  if " + IMDS_GET + 'meta-data/spot/instance-action" > notice.json; then\n'
    "    " + IMDS_GET + 'meta-data/events/recommendations/rebalance" > rebalance.json\n'
    "    echo noticed; break\n"
    "  fi\n"
    "  sleep 0.02\n"
    "done\n"
    "sleep 1000\n"
)


def test_an_interruption_is_seen_by_the_instance_and_terminates_it_two_emulator_minutes_later(
    running: LocalCloud,
) -> None:
    instance_id = launch(running, WATCH_SPOT, **SPOT)
    eventually(lambda: "watching" in running.console_output(instance_id))
    now = running.clock.now()

    started = running.interrupt(instance_id)

    assert len(started) == 1  # the probe app's rule on the spot warning
    assert running.wait(started[0]).output == {"instance_id": instance_id, "action": "terminate"}
    eventually(lambda: "noticed" in running.console_output(instance_id))
    root = running.instance_root(instance_id)
    notice = json.loads((root / "notice.json").read_text())
    assert notice["action"] == "terminate"
    assert notice["time"] == (now + running_notice()).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads((root / "rebalance.json").read_text()) == {"noticeTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}

    running.clock.advance(minutes=1)
    assert state(running, instance_id) == "running"
    running.clock.advance(minutes=1)
    described = running.instance(instance_id)
    assert described["State"]["Name"] == "terminated"
    assert described["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    assert running.wait_for_instance_process(instance_id, 10) == -15


def running_notice() -> Any:
    from ec2ops.local.cloud import INTERRUPTION_NOTICE

    return INTERRUPTION_NOTICE


def test_leaving_the_cloud_kills_every_instance_process_and_removes_the_sandboxes(probe_assembly: Path) -> None:
    quiet_moto_logs()
    with LocalCloud(probe_assembly, lambda_source=FUNCTIONS, run_user_data=True) as local:
        instance_id = launch(local, "#!/bin/bash\ntrap '' TERM\necho started\nsleep 1000 &\nsleep 1000\n")
        eventually(lambda: "started" in local.console_output(instance_id))
        process = local.instance_process(instance_id)
        assert process is not None
        root = local.instance_root(instance_id)
    assert process.poll() is not None
    eventually(lambda: group_gone(process.pid), timeout=5)
    assert not root.exists()
