"""`make bench`: what the snapshot and resize workflows cost on ec2ops.local: real time, emulated time, calls.

Figures only; nothing here passes or fails. Later issues add cost, latency and pool-choice benchmarks.
"""

from __future__ import annotations

import statistics
import time

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


if __name__ == "__main__":
    main()
