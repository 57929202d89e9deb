"""Record: the switch (or the parked standby) in the ledger, with every dollar, and the message for the topic.

Two items per outcome: on the old instance's partition (`spot-switch` or `spot-standby`: the decision, the pools
tried, prices, timing, savings) and on the new one's (`spot-replacement`: where it came from), so either id leads to
the story. Savings are hourly, versus on-demand for the replacement's own type; the difference to the interrupted
pool's spot price is given too when known.
"""

from __future__ import annotations

from typing import Any

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.errors import Ec2OpsError
from ec2ops_lambda.models.common import iso
from ec2ops_lambda.models.spot import Action, ChooseResult, Incident, LaunchResult, PromoteResult, SourceInstance

WORKFLOW = "spot-failover"
SUBJECT = "ec2ops spot failover"


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _old_price(choice: ChooseResult | None) -> float | None:
    if choice is None:
        return None
    for entry in choice.ranked:
        if entry.get("pool") == choice.interrupted_pool:
            price = entry.get("spot_price")
            return float(price) if price is not None else None
    return None


def cost_effect(launched: LaunchResult, old_price: float | None) -> dict[str, Any]:
    """The replacement's hourly price, and what it saves versus on-demand (and versus the old pool)."""
    savings = (
        None
        if launched.hourly_price is None or launched.on_demand_price is None
        else launched.on_demand_price - launched.hourly_price
    )
    return {
        "hourly_usd": _money(launched.hourly_price),
        "on_demand_hourly_usd": _money(launched.on_demand_price),
        "hourly_savings_vs_on_demand_usd": _money(savings),
        "hourly_delta_vs_interrupted_usd": _money(
            None if old_price is None or launched.hourly_price is None else launched.hourly_price - old_price
        ),
        "market": launched.market,
        "note": "spot prices as quoted when the pool was chosen; on-demand: Linux list price for the type",
    }


def record(
    action: Action,
    source: SourceInstance,
    incident: Incident,
    choice: ChooseResult | None,
    launched: LaunchResult | None,
    promotion: PromoteResult,
    *,
    ledger: Ledger,
    execution_id: str,
) -> dict[str, Any]:
    """Write both ledger items; the workflow's output, with the notification's text."""
    launch = launched or incident.standby_launch
    if launch is None:
        raise Ec2OpsError(f"nothing to record for {source.instance_id}: no launch of this execution or its standby")
    old_price = _old_price(choice)
    seconds_to_running = (launch.running_at - incident.notice_time).total_seconds()
    money = cost_effect(launch, old_price)
    status = promotion.state
    new_pool = f"{launch.instance_type}/{launch.availability_zone}"
    detail: dict[str, Any] = {
        "old": {
            "instance_id": source.instance_id,
            "pool": source.pool.name,
            "market": source.market,
            "hourly_usd": old_price,
        },
        "new": {
            "instance_id": launch.instance_id,
            "pool": new_pool,
            "market": launch.market,
            "hourly_usd": launch.hourly_price,
            "on_demand_hourly_usd": launch.on_demand_price,
            "client_token": launch.client_token,
        },
        "reason": {
            "signal": incident.signal_kind,
            "action": incident.signal_action,
            "event_id": incident.event_id,
            "notice_time": iso(incident.notice_time),
        },
        "how": action,
        "fell_back_to_on_demand_because": launch.fell_back_because,
        "pools_tried": [attempt.model_dump(mode="json") for attempt in launch.attempts],
        "ranking": choice.ranked if choice else None,
        "choice_notes": choice.notes if choice else None,
        "seconds_notice_to_running": round(seconds_to_running, 3),
        "elastic_ip": promotion.elastic_ip,
    }
    kind = "spot-switch" if status == "replaced" else "spot-standby"
    if status == "replaced":
        what = f"replaced by {launch.instance_id} ({launch.market}, {new_pool})"
        if launch.fell_back_because:
            what += f"; on-demand because {launch.fell_back_because}"
    else:
        what = f"standby {launch.instance_id} ready ({launch.market}, {new_pool}); promoted on the interruption warning"
    ledger.put(
        LedgerItem(
            instance_id=source.instance_id,
            kind=kind,
            change_id=incident.change_id,
            execution_id=execution_id,
            workflow=WORKFLOW,
            keyed_at=incident.notice_time,
            at=clock.utcnow(),
            what=what,
            why=f"{incident.signal_kind} ({incident.signal_action})",
            cost_effect=money,
            detail=detail,
        )
    )
    ledger.put(
        LedgerItem(
            instance_id=launch.instance_id,
            kind="spot-replacement" if status == "replaced" else "spot-standby",
            change_id=incident.change_id,
            execution_id=execution_id,
            workflow=WORKFLOW,
            keyed_at=incident.notice_time,
            at=clock.utcnow(),
            what=f"launched to replace {source.instance_id}" + (" (standby)" if status != "replaced" else ""),
            why=f"{incident.signal_kind} ({incident.signal_action}) of {source.instance_id} in {source.pool.name}",
            cost_effect=money,
            detail={"replaces": source.instance_id, "pool": new_pool, "market": launch.market},
        )
    )
    savings = money["hourly_savings_vs_on_demand_usd"]
    lines = [
        f"{source.instance_id} ({source.pool.name}, {source.market}): {what}.",
        f"Signal: {incident.signal_kind} ({incident.signal_action}) at {iso(incident.notice_time)}; "
        f"replacement running {seconds_to_running:.0f} s after it.",
        f"Price: {launch.hourly_price} USD/h ({launch.market}); on-demand {launch.on_demand_price} USD/h; "
        f"saving {savings} USD/h versus on-demand.",
        f"Pools tried: {'; '.join(f'{a.pool} {a.market} {a.outcome}' for a in launch.attempts) or 'none (standby)'}.",
    ]
    if promotion.elastic_ip:
        lines.append(f"Elastic IP {promotion.elastic_ip} now points at {launch.instance_id}.")
    return {
        "status": status,
        "old_instance_id": source.instance_id,
        "new_instance_id": launch.instance_id,
        "market": launch.market,
        "pool": new_pool,
        "hourly_usd": launch.hourly_price,
        "hourly_savings_vs_on_demand_usd": savings,
        "seconds_notice_to_running": round(seconds_to_running, 3),
        "elastic_ip": promotion.elastic_ip,
        "fell_back_because": launch.fell_back_because,
        "subject": f"{SUBJECT}: {source.instance_id} {status}",
        "message": "\n".join(lines),
    }
