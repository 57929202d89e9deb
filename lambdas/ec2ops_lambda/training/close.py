"""Closing a run, on every path: the state to cleanup, the instances terminated, the state archived, the cost
recorded. One function serves the success path, the failure catch, the console stop (through the execution status
change rule) and the sweeper, so a run ends the same way whoever ends it; each step tolerates having been done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ec2ops_run_state import TRANSITIONS, ConcurrentUpdate, RunStateStore, StateMissing

from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.aws.training import LIVE_STATES, TrainingAws
from ec2ops_lambda.models.common import as_utc, caught_error, iso
from ec2ops_lambda.pricing import bundled_price
from ec2ops_lambda.training.start import WORKFLOW, run_partition

Outcome = Literal["succeeded", "failed", "killed"]
_RACE_RETRIES = 5
MINIMUM_BILLED_SECONDS = 60.0
"""EC2 bills Linux instances per second with a one-minute minimum."""

# What the Step Functions error names mean to the person reading the run's error.
_EXPLAINED = {
    "States.HeartbeatTimeout": (
        "HeartbeatMissed",
        "no heartbeat from the instance within the heartbeat timeout: it died, hung or lost its network",
    ),
    "States.Timeout": ("RunTimedOut", "the run reached max_runtime_hours"),
}


@dataclass(frozen=True)
class Closing:
    """Why and how a run ends."""

    outcome: Outcome
    error: str | None = None
    message: str | None = None


def closing_for(error: Any, *, resumes_exhausted: bool = False) -> Closing:
    """The Closing of a caught Step Functions error: its name explained, the instance's cause kept verbatim."""
    name, cause = caught_error(error)
    if resumes_exhausted:
        return Closing("failed", "ResumesExhausted", f"spot interrupted again and no resume is left: {cause}")
    if name in _EXPLAINED:
        explained, text = _EXPLAINED[name]
        return Closing("failed", explained, text + (f" ({cause})" if cause else ""))
    return Closing("failed", name, cause or name)


def _cost(ledger: Ledger, aws: TrainingAws, run_id: str, now: datetime) -> dict[str, Any]:
    """Instance-hours x price for every instance of the run, and what spot saved versus on-demand."""
    launched = [item for item in ledger.items("", partition=run_partition(run_id)) if item["kind"] == "run-instance"]
    lines = []
    total = 0.0
    on_demand_total = 0.0
    for item in launched:
        detail = item["detail"]
        start = datetime.fromisoformat(str(detail["launched_at"]).replace("Z", "+00:00"))
        hours = max(MINIMUM_BILLED_SECONDS, (as_utc(now) - start).total_seconds()) / 3600
        price = item["cost_effect"].get("hourly_usd")
        on_demand = item["cost_effect"].get("on_demand_hourly_usd") or bundled_price(str(detail["instance_type"]))
        cost = hours * float(price) if price is not None else None
        on_demand_cost = hours * float(on_demand) if on_demand is not None else None
        total += cost or 0.0
        on_demand_total += on_demand_cost or 0.0
        lines.append(
            {
                "instance_id": item["instance_id"],
                "attempt": int(detail["attempt"]),
                "market": detail["market"],
                "hours": round(hours, 6),
                "hourly_usd": price,
                "usd": None if cost is None else round(cost, 6),
            }
        )
    return {
        "instances": lines,
        "instance_hours": round(sum(line["hours"] for line in lines), 6),
        "usd": round(total, 6),
        "on_demand_usd": round(on_demand_total, 6),
        "savings_vs_on_demand_usd": round(on_demand_total - total, 6),
        "note": "hours from launch to the run's end (at least one minute each, as EC2 bills); spot prices as "
        "quoted at launch",
    }


def _to_cleanup(store: RunStateStore, run_id: str, closing: Closing) -> bool:
    """Move the run's state to cleanup (through failed or killed unless it succeeded); False when the state file
    is gone or belongs to another run. A write that races the instance's own last update is retried."""
    for _ in range(_RACE_RETRIES):
        try:
            state, _etag = store.read()
        except StateMissing:
            return False
        if state.run_id != run_id:
            return False
        try:
            if closing.outcome != "succeeded" and state.status not in ("failed", "killed", "cleanup"):
                target = "killed" if closing.outcome == "killed" and "killed" in TRANSITIONS[state.status] else "failed"
                store.transition(run_id, target, error_message=f"{closing.error}: {closing.message}")
            store.transition(run_id, "cleanup", step="cleanup: terminating, archiving", idempotent=True)
        except ConcurrentUpdate:
            continue
        return True
    raise ConcurrentUpdate(f"the state file of run {run_id} kept changing during cleanup; the next cleanup retries")


def close_run(
    env: str,
    run_id: str,
    closing: Closing,
    *,
    aws: TrainingAws,
    store: RunStateStore,
    ledger: Ledger,
    execution_id: str,
    now: datetime,
) -> dict[str, Any]:
    """End the run: status -> (failed|killed ->) cleanup, instances terminated, state archived, cost recorded."""
    history: list[dict[str, str]] = []
    final_key = None
    ours = _to_cleanup(store, run_id, closing)
    live = [i for i in aws.run_instances_of(run_id) if i.get("State", {}).get("Name") in LIVE_STATES]
    aws.terminate([str(i["InstanceId"]) for i in live])
    if ours:
        final, _ = store.read()
        history = list(final.history)
        final_key = store.archive(run_id)
    cost = _cost(ledger, aws, run_id, now)
    status = closing.outcome if closing.outcome == "succeeded" else (closing.error or closing.outcome)
    ledger.put(
        LedgerItem(
            instance_id=run_id,
            kind="run-closed",
            change_id=run_id,
            execution_id=execution_id,
            workflow=WORKFLOW,
            keyed_at=now,
            at=now,
            what=f"run {run_id} in {env} {closing.outcome}"
            + (f": {closing.error}: {closing.message}" if closing.error else ""),
            why="the run ended" if closing.outcome == "succeeded" else str(closing.message),
            cost_effect={
                "usd": cost["usd"],
                "on_demand_usd": cost["on_demand_usd"],
                "savings_vs_on_demand_usd": cost["savings_vs_on_demand_usd"],
                "note": "nothing bills after the run: its instances are terminated",
            },
            detail={
                "env": env,
                "outcome": closing.outcome,
                "error": closing.error,
                "message": closing.message,
                "history": history,
                "terminated": [str(i["InstanceId"]) for i in live],
                "final_state": final_key,
                "cost": cost,
            },
            partition=run_partition(run_id),
        )
    )
    lines = [
        f"Training run {run_id} in {env}: {status}.",
        *([f"{closing.error}: {closing.message}"] if closing.error else []),
        f"Statuses: {' -> '.join(entry['status'] for entry in history) or 'unknown'}.",
        f"Cost: {cost['usd']:.4f} USD for {cost['instance_hours']:.3f} instance-hours "
        f"(on-demand would be {cost['on_demand_usd']:.4f} USD; saved {cost['savings_vs_on_demand_usd']:.4f} USD).",
        f"Final state: s3://{store.bucket}/{final_key}" if final_key else "The state file was already archived.",
    ]
    return {
        "status": closing.outcome,
        "run_id": run_id,
        "env": env,
        "error": closing.error,
        "cause": closing.message,
        "history": [entry["status"] for entry in history],
        "final_state": final_key,
        "cost": cost,
        "terminated": [str(i["InstanceId"]) for i in live],
        "message": "\n".join(lines),
        "closed_at": iso(now),
    }
