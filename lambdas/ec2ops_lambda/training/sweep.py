"""What ends runs the workflow itself could not: the console's stop and the sweeper.

- `reap`: an EventBridge rule on the state machine's execution status change (ABORTED, TIMED_OUT, FAILED) calls
  it; the run of that execution is closed (`killed` for a stop from the console). A run the workflow already
  closed has no state file any more: nothing to do.
- `sweep`: on a schedule, terminates training instances past their `ec2ops:expires-at` tag, and closes runs whose
  state file is stale and whose instance is gone (a lock nobody will release).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ec2ops_run_state import RunStateStore, StateMissing

from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.training import EXPIRES_TAG, LIVE_STATES, RUN_TAG, TrainingAws
from ec2ops_lambda.models.common import as_utc, tags_dict
from ec2ops_lambda.models.training import ENV_PATTERN
from ec2ops_lambda.training.close import Closing, close_run
from ec2ops_lambda.training.config import TrainingSettings

StoreFor = Callable[[str], RunStateStore]
_BY_STATUS = {
    "ABORTED": Closing("killed", "RunKilled", "the execution was stopped (from the console or the API)"),
    "TIMED_OUT": Closing("failed", "ExecutionTimedOut", "the execution timed out"),
    "FAILED": Closing("failed", "ExecutionFailed", "the execution failed before it could clean up"),
}


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def reap(
    event: dict[str, Any], *, aws: TrainingAws, store_for: StoreFor, ledger: Ledger, now: datetime
) -> dict[str, Any]:
    """Close the run of an execution that ended without its own cleanup; anything else is left alone."""
    detail = event.get("detail") or {}
    status = str(detail.get("status", ""))
    execution = str(detail.get("executionArn", ""))
    closing = _BY_STATUS.get(status)
    try:
        request = json.loads(detail.get("input") or "{}")
    except ValueError:
        request = {}
    env = request.get("env") if isinstance(request, dict) else None
    if closing is None or not isinstance(env, str) or not re.match(ENV_PATTERN, env):
        return {"action": "none", "why": f"not a run to close (status {status!r}, env {env!r})"}
    store = store_for(env)
    try:
        state, _ = store.read()
    except StateMissing:
        return {"action": "none", "why": f"no active run in {env}: the execution cleaned up itself"}
    if state.execution_id != execution:
        return {"action": "none", "why": f"the active run in {env} ({state.run_id}) belongs to another execution"}
    closed = close_run(env, state.run_id, closing, aws=aws, store=store, ledger=ledger, execution_id=execution, now=now)
    return {"action": "closed", **closed}


def sweep(
    *, aws: TrainingAws, store_for: StoreFor, ledger: Ledger, config: TrainingSettings, now: datetime
) -> dict[str, Any]:
    """Terminate expired training instances; close stale runs whose instance is gone."""
    expired: list[str] = []
    for instance in aws.training_instances():
        tags = tags_dict(instance.get("Tags"))
        expires = _parse_time(tags.get(EXPIRES_TAG))
        if expires is not None and expires < as_utc(now):
            expired.append(str(instance["InstanceId"]))
    aws.terminate(expired)
    closed: list[str] = []
    stale_after = timedelta(minutes=config.stale_after_minutes)
    for env in aws.state_file_envs(config.bucket):
        store = store_for(env)
        try:
            state, _ = store.read()
        except StateMissing:
            continue
        last = _parse_time(state.timestamps.get("heartbeat")) or _parse_time(state.timestamps.get("last_update"))
        if last is None or as_utc(now) - last < stale_after:
            continue
        alive = [
            i
            for i in aws.run_instances_of(state.run_id)
            if i.get("State", {}).get("Name") in LIVE_STATES and tags_dict(i.get("Tags")).get(RUN_TAG) == state.run_id
        ]
        if alive:
            continue
        what = f"instance {state.instance_id} is gone" if state.instance_id else "no instance was ever launched"
        close_run(
            env,
            state.run_id,
            Closing("failed", "StaleRun", f"{what} and the state file was not updated for {stale_after}: lock broken"),
            aws=aws,
            store=store,
            ledger=ledger,
            execution_id=state.execution_id or "sweeper",
            now=now,
        )
        closed.append(state.run_id)
    return {"terminated_expired": expired, "closed_stale_runs": closed}
