"""The synthesized training run and spot failover pieces that no execution shows: the rules, the waits, the
training instance's role."""

from __future__ import annotations

from typing import Any

import pytest

from stacks import constants as c
from tests.infra import iam_helpers as iam
from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def machine_states(app: Synthesized, name: str) -> dict[str, dict[str, Any]]:
    (resource,) = [r for r in iam.state_machines(app.template).values() if r["Properties"]["StateMachineName"] == name]
    return dict(iam.iter_states(iam.definition(resource)))


def rules(app: Synthesized) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["Name"]: r["Properties"] for r in app.resources("AWS::Events::Rule").values()}


def test_the_training_instance_is_awaited_with_a_heartbeat_and_the_run_s_own_time_limit(
    default_app: Synthesized,
) -> None:
    states = machine_states(default_app, c.TRAINING_STATE_MACHINE)
    run = states["RunInstance"]
    assert run["Resource"].endswith(":lambda:invoke.waitForTaskToken")
    assert run["HeartbeatSeconds"] == 300
    assert run["TimeoutSecondsPath"] == "$.plan.timeout_seconds"
    assert run["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    catches = [(catch["ErrorEquals"], catch["Next"]) for catch in run["Catch"]]
    assert catches == [(["SpotInterrupted"], "ResumeLeft?"), (["States.ALL"], "Cleanup")]
    assert "Retry" not in run, "a retried launch would start a second instance for a stale token"


def test_spot_signals_and_execution_ends_have_their_rules(default_app: Synthesized) -> None:
    found = rules(default_app)
    spot = found[f"{c.SPOT_STATE_MACHINE}-signals"]
    assert spot["EventPattern"] == {"source": ["aws.ec2"], "detail-type": list(c.SPOT_DETAIL_TYPES)}
    ended = found[f"{c.TRAINING_STATE_MACHINE}-ended"]
    assert ended["EventPattern"]["source"] == ["aws.states"]
    assert ended["EventPattern"]["detail"]["status"] == ["ABORTED", "TIMED_OUT", "FAILED"]
    assert found[f"{c.TRAINING_STATE_MACHINE}-sweep"]["ScheduleExpression"] == "rate(5 minutes)"


def test_the_training_instance_role_reads_datasets_writes_runs_and_terminates_only_itself(
    default_app: Synthesized,
) -> None:
    (profile,) = default_app.resources("AWS::IAM::InstanceProfile").values()
    (role_ref,) = profile["Properties"]["Roles"]
    role = role_ref["Ref"]
    trust = default_app.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    statements = iam.role_statements(default_app.template, role)
    (deny,) = [s for s in statements if s.effect == "Deny"]
    assert set(deny.actions) == {"s3:PutObject", "s3:DeleteObject"}
    assert all(r.endswith("/cached-datasets/*") for r in deny.resources)
    (terminate,) = [s for s in statements if s.allows("ec2:TerminateInstances")]
    assert terminate.condition["StringEquals"] == {"aws:ARN": "${ec2:SourceInstanceARN}"}
    allowed = iam.allowed_actions(statements)
    assert allowed == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
        "ec2:TerminateInstances",
    }


def test_training_launch_creates_only_instances_tagged_with_a_run_id(default_app: Synthesized) -> None:
    (launch,) = [
        r
        for r in default_app.resources("AWS::Lambda::Function").values()
        if r["Properties"]["FunctionName"] == c.training_function_name("launch")
    ]
    statements = iam.role_statements(default_app.template, iam.role_of(launch))
    instances = "arn:aws:ec2:us-east-1:<AWS::AccountId>:instance/*"
    (run,) = [s for s in statements if s.allows("ec2:RunInstances") and instances in s.resources]
    assert run.condition == {"Null": {f"aws:RequestTag/{c.TAG_RUN_ID}": "false"}}
