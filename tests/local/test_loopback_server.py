"""Another process reaches the same embedded AWS over loopback with --endpoint-url."""

from __future__ import annotations

import json
import subprocess
import sys

from ec2ops.local import LocalCloud

CHILD = """
import json, sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
state = ec2.describe_instances(InstanceIds=[sys.argv[2]])["Reservations"][0]["Instances"][0]["State"]["Name"]
try:
    ec2.stop_instances(InstanceIds=[sys.argv[2]])
    stopped = "ok"
except Exception as error:
    stopped = error.response["Error"]["Code"]
print(json.dumps({"state": state, "stop": stopped}))
"""


def test_a_child_process_sees_the_same_instances_and_the_same_faults(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    endpoint = cloud.serve()
    cloud.inject_fault("ec2", "StopInstances", "UnauthorizedOperation")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, endpoint, iid], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert json.loads(out) == {"state": "running", "stop": "UnauthorizedOperation"}
    assert cloud.counter.total["ec2:DescribeInstances"] >= 1
