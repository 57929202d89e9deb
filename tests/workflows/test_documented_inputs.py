"""The console inputs in docs/ are the ones that work: each example runs on the synthesized workflow."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ec2ops.local import LocalCloud

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE_ID = "i-0123456789abcdef0"


def console_inputs(page: str) -> list[dict[str, Any]]:
    """The JSON blocks of a doc page that are workflow inputs (they name an instance)."""
    blocks = re.findall(r"```json\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)
    inputs = [json.loads(block) for block in blocks if '"instance_id"' in block and '"status"' not in block]
    assert inputs, f"{page} documents no console input"
    return inputs


@pytest.mark.parametrize("example", console_inputs("snapshot.md"), ids=lambda e: ",".join(sorted(e)))
def test_every_documented_snapshot_input_runs(cloud: LocalCloud, example: dict[str, Any]) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(20,))
    result = cloud.run("snapshot", json.loads(json.dumps(example).replace(EXAMPLE_ID, iid)))
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["instance_id"] == iid


@pytest.mark.parametrize("example", console_inputs("resize.md"), ids=lambda e: ",".join(sorted(e)))
def test_every_documented_resize_input_runs(cloud: LocalCloud, example: dict[str, Any]) -> None:
    iid = cloud.launch_instance("t3.2xlarge", availability_zone="us-east-1a")
    result = cloud.run("resize", json.loads(json.dumps(example).replace(EXAMPLE_ID, iid)))
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["status"] in ("resized", "planned")
    assert cloud.instance(iid)["State"]["Name"] == "running"


@pytest.mark.parametrize("example", console_inputs("spot-failover.md"), ids=lambda e: e["action"])
def test_every_documented_spot_failover_input_runs(cloud: LocalCloud, example: dict[str, Any]) -> None:
    iid = cloud.launch_instance("m5.large", market="spot", tags={"ec2ops:failover": "standby"})
    if example["action"] == "promote":  # a standby must be prepared first, as the page says
        prepared = cloud.run("spot-failover", {"instance_id": iid, "action": "prepare"})
        assert prepared.status == "SUCCEEDED", prepared.cause
    result = cloud.run("spot-failover", json.loads(json.dumps(example).replace(EXAMPLE_ID, iid)))
    assert result.status == "SUCCEEDED", result.cause
    expected = "standby-ready" if example["action"] == "prepare" else "replaced"
    assert (result.output["status"], result.output["old_instance_id"]) == (expected, iid)
