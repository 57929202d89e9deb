"""`make bench`: what the snapshot and spot failover workflows cost on ec2ops.local: real time, emulated time, calls.

Figures only; nothing here passes or fails. Later issues add cost, latency and pool-choice benchmarks.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ec2ops.local import LocalCloud
from ec2ops.local.cloud import quiet_moto_logs

RUNS = 5


def main() -> None:
    quiet_moto_logs()
    started = time.perf_counter()
    with LocalCloud() as cloud:
        deployed = time.perf_counter() - started
        iid = cloud.launch_instance("t3.2xlarge", extra_volumes_gib=(100, 200))
        wall, emulated, calls, transitions = [], [], [], []
        for run in range(RUNS):
            before_clock, before = cloud.clock.now(), time.perf_counter()
            result = cloud.run(
                "snapshot", {"instance_id": iid, "reason": f"bench {run}", "retain": {"count": 3, "days": None}}
            )
            wall.append(time.perf_counter() - before)
            emulated.append((cloud.clock.now() - before_clock).total_seconds())
            calls.append(sum(result.counts.api_calls.values()))
            transitions.append(result.counts.state_transitions)
            assert result.status == "SUCCEEDED", result.cause
            cloud.clock.advance(hours=1)
        print(f"deploy cdk.out into ec2ops.local: {deployed:.2f} s")
        print(f"snapshot workflow, 3 volumes, {RUNS} runs:")
        print(f"  real time per run      median {statistics.median(wall):.2f} s  max {max(wall):.2f} s")
        print(f"  emulated time per run  median {statistics.median(emulated):.0f} s (EBS snapshot 40-90 s)")
        print(f"  state transitions      median {statistics.median(transitions):.0f}")
        print(
            f"  AWS API calls per run  median {statistics.median(calls):.0f} "
            f"(incl. Lambda invokes; last run: {dict(result.counts.api_calls)})"
        )

        spot_failover(cloud)


def spot_failover(cloud: LocalCloud) -> None:
    """The interruption warning to a promoted replacement, with EC2's launch latency on the emulator clock."""
    sample = (Path(__file__).parents[1] / "tests/fixtures/aws-events/spot-interruption-warning.json").read_text()
    wall, to_running, calls, invocations, savings = [], [], [], [], []
    for _ in range(RUNS):
        iid = cloud.launch_instance(
            "m5.large", market="spot", availability_zone="us-east-1a", tags={"ec2ops:failover": "replace"}
        )
        before = time.perf_counter()
        (arn,) = cloud.put_event(json.loads(sample.replace("i-1234567890abcdef0", iid)))
        result = cloud.wait(arn)
        wall.append(time.perf_counter() - before)
        assert result.status == "SUCCEEDED", result.cause
        to_running.append(float(result.output["seconds_notice_to_running"]))
        calls.append(sum(result.counts.api_calls.values()))
        invocations.append(sum(result.counts.lambda_invocations.values()))
        savings.append(float(result.output["hourly_savings_vs_on_demand_usd"] or 0))
        cloud.clock.advance(minutes=10)
    print(f"spot failover, published warning -> replacement promoted, {RUNS} runs (m5.large spot):")
    print(f"  real time per run            median {statistics.median(wall):.2f} s")
    print(f"  notice to replacement running median {statistics.median(to_running):.0f} s emulated (budget 120 s)")
    print(f"  Lambda invocations           median {statistics.median(invocations):.0f}")
    print(f"  AWS API calls per run        median {statistics.median(calls):.0f}")
    print(f"  hourly savings vs on-demand  median {statistics.median(savings):.4f} USD")


if __name__ == "__main__":
    main()
