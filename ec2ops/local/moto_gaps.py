"""One small, named workaround per place where moto 5.2.5 differs from AWS (see ../shared/notes/moto.md).

Each function patches moto for the life of an `ExitStack` and says in its name what gap it covers. LocalCloud
applies them all on entry and undoes them on exit; tests/local prove each one.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from ec2ops.local import counters
from ec2ops.local.capacity import CapacityReservations
from ec2ops.local.clock import EmulatorClock
from ec2ops.local.ec2_timing import Ec2Timing
from ec2ops.local.events import EventRouter
from ec2ops.local.faults import ErrorResponse
from ec2ops.local.market import SpotMarket

CallHook = Callable[[str, str], ErrorResponse | None]  # (service id, operation) -> an error to answer with


def _replace_everywhere(stack: ExitStack, original: Any, replacement: Any, prefix: str) -> None:
    """Rebind `original` in every loaded module under `prefix` that imported it by name."""
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefix) or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is original:
                stack.enter_context(mock.patch.object(module, attribute, replacement))


def moto_time_is_wall_clock(stack: ExitStack, clock: EmulatorClock) -> None:
    """moto stamps launch and snapshot times with the wall clock; use the emulator clock instead."""
    for module in (
        "moto.ec2.models",
        "moto.events.models",
        "moto.scheduler.models",
        "moto.stepfunctions.models",
    ):
        importlib.import_module(module)
    import moto.core.utils as core_utils

    _replace_everywhere(stack, core_utils.utcnow, clock.naive_now, "moto")


def instant_ec2_transitions(stack: ExitStack, timing: Ec2Timing) -> None:
    """moto stops and starts instances at once and accepts a type change while running; EC2 does neither."""
    from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
    from moto.ec2.models.instances import Instance, InstanceBackend

    original_terminate = Instance.terminate
    original_run = InstanceBackend.run_instances
    original_modify = InstanceBackend.modify_instance_attribute
    original_create_snapshot = EBSBackend.create_snapshot

    def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original_run(self, *args, **kwargs)
        for instance in reservation.instances:
            timing.launched(instance)
        return reservation

    def modify_instance_attribute(self: Any, instance_id: str, key: str, value: Any) -> Any:
        if key == "instance_type":
            timing.require_stopped_for_type_change(self.get_instance(instance_id))
        return original_modify(self, instance_id, key, value)

    def create_snapshot(self: Any, *args: Any, **kwargs: Any) -> Any:
        snapshot = original_create_snapshot(self, *args, **kwargs)
        if not kwargs.get("from_ami"):
            timing.snapshot_created(snapshot)
        return snapshot

    # A bound method is no descriptor: the lambdas make `instance.stop()` pass the instance.
    stack.enter_context(mock.patch.object(Instance, "stop", lambda self: timing.stop(self)))  # noqa: PLW0108
    stack.enter_context(mock.patch.object(Instance, "start", lambda self: timing.start(self)))  # noqa: PLW0108
    stack.enter_context(
        mock.patch.object(Instance, "terminate", lambda self: timing.terminate(self, original_terminate))
    )
    stack.enter_context(mock.patch.object(InstanceBackend, "run_instances", run_instances))
    stack.enter_context(mock.patch.object(InstanceBackend, "modify_instance_attribute", modify_instance_attribute))
    stack.enter_context(mock.patch.object(EBSBackend, "create_snapshot", create_snapshot))
    stack.enter_context(
        mock.patch.object(Snapshot, "progress", property(lambda self: getattr(self, "_ec2ops_progress", "100%")))
    )


def run_instances_ignores_client_token(stack: ExitStack) -> None:
    """moto launches again for a repeated ClientToken; EC2 returns the instance it launched for that token (any
    state, for a while) and refuses the token with other parameters (`IdempotentParameterMismatch`)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    original_run = InstanceBackend.run_instances

    def run_instances(
        self: Any, image_id: str, count: int, user_data: Any, security_group_names: Any, **kwargs: Any
    ) -> Any:
        token = kwargs.get("client_token")
        if token and token != "ABCDE":  # moto's stand-in when the request has none
            for reservation in self.reservations.values():
                for instance in reservation.instances:
                    if getattr(instance, "client_token", None) != token:
                        continue
                    if instance.instance_type != kwargs.get("instance_type") or instance.image_id != image_id:
                        raise EC2ClientError(
                            "IdempotentParameterMismatch",
                            f"Client token {token} was used before with other parameters",
                        )
                    return reservation
        return original_run(self, image_id, count, user_data, security_group_names, **kwargs)

    stack.enter_context(mock.patch.object(InstanceBackend, "run_instances", run_instances))


def wait_and_retry_really_sleep(stack: ExitStack, clock: EmulatorClock) -> None:
    """Wait states and Retry backoff call time.sleep; on the emulator they pass emulator time instead."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp, wait_function

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if env.is_running():
            clock.sleep(wait_seconds)

    class _Time:
        @staticmethod
        def sleep(seconds: float) -> None:
            clock.sleep(seconds)

    stack.enter_context(mock.patch.object(wait_function.WaitFunction, "_wait_interval", wait_interval))
    stack.enter_context(mock.patch.object(retrier_decl, "time", _Time))

    original_seconds = timestamp.Timestamp._get_wait_seconds

    def wait_until(self: Any, env: Any) -> int:
        # `Timestamp` waits count from the wall clock; count from the emulator clock.
        import datetime as _dt

        class _FrozenDatetime(_dt.datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                now = clock.now()
                return now if tz is not None else now.astimezone(UTC).replace(tzinfo=None)

            @classmethod
            def utcnow(cls) -> Any:
                return clock.naive_now()

        with mock.patch.object(timestamp.datetime, "datetime", _FrozenDatetime):  # type: ignore[attr-defined]
            seconds: int = original_seconds(self, env)
        return seconds

    stack.enter_context(mock.patch.object(timestamp.Timestamp, "_get_wait_seconds", wait_until))


def aws_sdk_error_names_lowercase(stack: ExitStack) -> None:
    """moto names EC2 SDK-task errors `ec2.ec2Exception`; AWS names them `Ec2.Ec2Exception`."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    stack.enter_context(mock.patch.dict(aws_sdk._SERVICE_ERROR_NAMES, {"ec2": "Ec2"}))


def jsonpath_definite_index_returns_list(stack: ExitStack) -> None:
    """`$.Reservations[0].Instances[0].State` gives `[value]` in moto; AWS gives the value."""
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        value = original(path, data)
        definite = not json_path._contains_slice_or_wildcard_array(path) and "?(" not in path
        if definite and "[" in path and isinstance(value, list) and len(value) == 1:
            matches = json_path.parse(path).find(data)  # type: ignore[attr-defined]
            if len(matches) == 1 and matches[0].value is not value:
                return matches[0].value
        return value

    _replace_everywhere(stack, original, extract_json, "moto.stepfunctions")


def lambda_invoke_echoes_payload(stack: ExitStack, invoke: Callable[..., tuple[bytes, str | None]]) -> None:
    """Without Docker, moto's invoke returns the request payload; run the real handler instead."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def simple_invoke(
        self: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        function = self.get_function(function_name, qualifier)
        payload = json.loads(body) if body else {}
        result, function_error = invoke(function, payload)
        if function_error:
            response_headers["x-amz-function-error"] = function_error
        response_headers["x-amz-executed-version"] = "$LATEST"
        return result

    stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", simple_invoke))


def event_targets_not_delivered(stack: ExitStack, router: EventRouter) -> None:
    """moto delivers matched events to SQS and logs only; deliver to Step Functions and Lambda targets too."""
    import copy

    from moto.events.models import Rule

    from ec2ops.local.events import is_function_target, is_state_machine_target

    original = Rule.send_to_targets

    def routed(arn: str) -> bool:
        return is_state_machine_target(arn) or is_function_target(arn)

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        ours = [t for t in self.targets if routed(t["Arn"])]
        others = [t for t in self.targets if not routed(t["Arn"])]
        if others:
            rest = copy.copy(self)
            rest.targets = others
            original(rest, original_event, transform_input)
        for target in ours:
            router.deliver(f"rule:{self.name}", target, dict(original_event))

    stack.enter_context(mock.patch.object(Rule, "send_to_targets", send_to_targets))


def botocore_calls_unobserved(stack: ExitStack, on_call: CallHook) -> None:
    """moto gives no hook per API call; observe each one (count, settle EC2 time, answer injected faults)."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders
    from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

    original = BotocoreStubber.__call__

    def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return None
        parts = event_name.split(".")
        if len(parts) >= 3:
            error = on_call(parts[1], parts[2])
            if error is not None:
                headers = HTTPHeaders()
                for key, value in error.headers.items():
                    headers[key] = value
                return AWSResponse(request.url, error.status, headers, MockRawResponse(error.body))
        return original(self, event_name, request, **kwargs)

    stack.enter_context(mock.patch.object(BotocoreStubber, "__call__", call))


def sfn_threads_carry_no_execution(stack: ExitStack) -> None:
    """Calls made for an execution carry no trace of it; tag the interpreter's threads with their execution."""
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    original = EvalComponent.eval

    def eval_with_execution(self: Any, env: Any) -> None:
        try:
            execution = env.states.context_object.context_object_data["Execution"]["Id"]
        except (AttributeError, KeyError, TypeError):
            execution = None
        if execution is not None:
            counters.set_current_execution(execution)
        original(self, env)

    stack.enter_context(mock.patch.object(EvalComponent, "eval", eval_with_execution))


def spot_market_is_constant(stack: ExitStack, market: SpotMarket, clock: EmulatorClock, region: str) -> None:
    """moto prices every spot pool at 0.00001 USD (dated 2006) and has no GetSpotPlacementScores."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_instances import SpotInstances

    def describe_spot_price_history(self: Any) -> Any:
        filters = self._filters_from_querystring()
        types = self._get_param("InstanceTypes", []) or filters.get("instance-type", [])
        zones = (
            [self._get_param("AvailabilityZone")]
            if self._get_param("AvailabilityZone")
            else filters.get("availability-zone", []) or sorted(market.zone_ids)
        )
        return ActionResult({"SpotPriceHistory": market.price_history(types, zones, clock.now())})

    def get_spot_placement_scores(self: Any) -> Any:
        types = self._get_param("InstanceTypes", [])
        scores = market.placement_scores(types, sorted(market.zone_ids), clock.now(), region)
        if not self._get_param("SingleAvailabilityZone"):
            best = max((score["Score"] for score in scores), default=1)
            scores = [{"Region": region, "Score": best}]
        return ActionResult({"SpotPlacementScores": scores})

    stack.enter_context(mock.patch.object(SpotInstances, "describe_spot_price_history", describe_spot_price_history))
    stack.enter_context(
        mock.patch.object(SpotInstances, "get_spot_placement_scores", get_spot_placement_scores, create=True)
    )


def sdk_results_carry_datetimes(stack: ExitStack) -> None:
    """moto leaves datetimes in aws-sdk task results (describe_execution then fails); AWS gives ISO strings."""
    from datetime import date, datetime

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    def as_json(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, dict):
            return {key: as_json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [as_json(item) for item in value]
        return value

    original = aws_sdk.StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        original(self, env, *args, **kwargs)
        env.stack.append(as_json(env.stack.pop()))

    stack.enter_context(mock.patch.object(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task))


def register_image_ignores_block_device_mappings(stack: ExitStack) -> None:
    """moto's RegisterImage builds the AMI from a snapshot of its own; AWS uses the root mapping's snapshot."""
    from moto.ec2.responses.amis import AmisResponse

    original = AmisResponse.register_image

    def register_image(self: Any) -> Any:
        result = original(self)
        root = self._get_param("RootDeviceName")
        mappings = self._get_param("BlockDeviceMappings", [])
        chosen = next((m for m in mappings if m.get("DeviceName") == root), mappings[0] if mappings else None)
        snapshot_id = (chosen or {}).get("Ebs", {}).get("SnapshotId")
        if chosen is not None and snapshot_id:
            image_id: str = result.result["ImageId"]  # type: ignore[index]
            image = self.ec2_backend.amis[image_id]
            own = image.ebs_snapshot
            image.ebs_snapshot = self.ec2_backend.get_snapshot(snapshot_id)
            image.ebs_snapshot.from_ami = image.id  # DeleteSnapshot now answers InvalidSnapshot.InUse, as AWS
            image.root_device_name = root or chosen["DeviceName"]
            self.ec2_backend.snapshots.pop(own.id, None)
        return result

    stack.enter_context(mock.patch.object(AmisResponse, "register_image", register_image))


def status_checks_always_ok(stack: ExitStack, timing: Ec2Timing) -> None:
    """moto reports status checks `ok` the moment an instance runs; EC2 initializes them first, and they can fail."""
    from moto.ec2.models.instances import Instance

    def checks(self: Any) -> dict[str, Any]:
        status = timing.status(self)
        if status == "not-applicable":
            return {"Status": status}
        detail = {"ok": "passed", "initializing": "initializing", "impaired": "failed"}[status]
        return {"Details": [{"Name": "reachability", "Status": detail}], "Status": status}

    stack.enter_context(mock.patch.object(Instance, "instance_status", property(checks)))
    stack.enter_context(mock.patch.object(Instance, "system_status", property(checks)))


def capacity_reservations_not_implemented(stack: ExitStack, backend: CapacityReservations, region: str) -> None:
    """moto has no on-demand capacity reservations; answer them from the emulator's own backend."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.instances import InstanceResponse

    def create_capacity_reservation(self: Any) -> Any:
        reservation = backend.create(
            instance_type=self._get_param("InstanceType"),
            platform=self._get_param("InstancePlatform"),
            availability_zone=self._get_param("AvailabilityZone"),
            count=self._get_int_param("InstanceCount", 1),
            end_date_type=self._get_param("EndDateType", "unlimited"),
            match_criteria=self._get_param("InstanceMatchCriteria", "open"),
            tags=self._parse_tag_specification().get("capacity-reservation", {}),
        )
        return ActionResult({"CapacityReservation": reservation.as_api(self.current_account, region)})

    def describe_capacity_reservations(self: Any) -> Any:
        ids = self._get_param("CapacityReservationIds", [])
        found = [backend.get(i) for i in ids] if ids else list(backend.reservations.values())
        return ActionResult({"CapacityReservations": [r.as_api(self.current_account, region) for r in found]})

    def cancel_capacity_reservation(self: Any) -> Any:
        backend.cancel(self._get_param("CapacityReservationId"))
        return ActionResult({"Return": True})

    def modify_instance_capacity_reservation_attributes(self: Any) -> Any:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        specification = self._get_param("CapacityReservationSpecification", {})
        target = specification.get("CapacityReservationTarget", {}).get("CapacityReservationId")
        backend.target(instance, target)
        return ActionResult({"Return": True})

    for handler in (
        create_capacity_reservation,
        describe_capacity_reservations,
        cancel_capacity_reservation,
        modify_instance_capacity_reservation_attributes,
    ):
        stack.enter_context(mock.patch.object(InstanceResponse, handler.__name__, handler, create=True))


def sfn_nested_execution_shapes_unconverted(stack: ExitStack) -> None:
    """moto passes a `states:startExecution` task's parameters to the SDK as written (`StateMachineArn`) and reads
    its results in SDK case (`executionArn`); AWS converts both ways. Convert, so nested executions run."""
    from datetime import datetime

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn as sfn_task,
    )

    def pascal(response: dict[str, Any]) -> dict[str, Any]:
        return {
            key[:1].upper() + key[1:]: value.isoformat() if isinstance(value, datetime) else value
            for key, value in response.items()
        }

    original_parameters = sfn_task.StateTaskServiceSfn._normalise_parameters
    original_response = sfn_task.StateTaskServiceSfn._normalise_response
    original_eval = sfn_task.StateTaskServiceSfn._eval_service_task

    def normalise_parameters(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_parameters(self, parameters, *args, **kwargs)
        for key in list(parameters):
            parameters[key[:1].lower() + key[1:]] = parameters.pop(key)

    def normalise_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        original_response(self, response, *args, **kwargs)
        if isinstance(response, dict):
            converted = pascal(response)
            response.clear()
            response.update(converted)

    def eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        original_eval(self, env, *args, **kwargs)
        env.stack.append(pascal(env.stack.pop()))

    for name, replacement in (
        ("_normalise_parameters", normalise_parameters),
        ("_normalise_response", normalise_response),
        ("_eval_service_task", eval_service_task),
    ):
        stack.enter_context(mock.patch.object(sfn_task.StateTaskServiceSfn, name, replacement))


STATUS_CHANGE = "Step Functions Execution Status Change"


def sfn_emits_no_status_change_events(
    stack: ExitStack, router: EventRouter, emit: Callable[[dict[str, Any]], None], now: Callable[[], datetime]
) -> None:
    """moto's Step Functions never sends "Step Functions Execution Status Change" events to EventBridge; AWS sends
    one when a Standard execution ends (SUCCEEDED, FAILED, TIMED_OUT, ABORTED), so rules on it never fire. Send it,
    in AWS's shape, when moto's interpreter reports the execution terminated (also after StopExecution)."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        execution = self.execution
        arn = str(execution.exec_arn)
        router.begin_publication(arn)
        try:
            original(self)
            if str(getattr(execution.sm_type, "value", execution.sm_type)) != "STANDARD":
                return  # Express workflows send no status change events
            event = execution_status_change_event(execution, now())
            # Routing the event is EventBridge's work, not the execution's: count its calls outside it.
            previous = counters.current_execution(), counters.current_function()
            counters.set_current_execution(None)
            counters.set_current_function(None)
            try:
                emit(event)
            except Exception as error:  # kept for tests; the execution itself has ended either way
                router.record_error(f"status-change:{execution.name}", arn, error, json.dumps(event, default=str))
            finally:
                counters.set_current_execution(None if previous[0] == counters.UNATTRIBUTED else previous[0])
                counters.set_current_function(previous[1])
        finally:
            router.end_publication(arn)

    stack.enter_context(mock.patch.object(BaseExecutionWorkerCommunication, "terminated", terminated))


def execution_status_change_event(execution: Any, at: datetime) -> dict[str, Any]:
    """The EventBridge event AWS sends for an execution that ended (moto's parser Execution)."""
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    def epoch_ms(value: Any) -> int | None:
        if not isinstance(value, datetime):
            return None
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)

    status = str(execution.status)
    output = execution.output if status == "SUCCEEDED" else None
    raw_input = execution.execution_input
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": status,
        "startDate": epoch_ms(execution.start_date),
        "stopDate": epoch_ms(execution.stop_date),
        "input": raw_input if isinstance(raw_input, str) else to_json_str(execution.input_data, separators=(",", ":")),
        # as DescribeExecution gives it, so that the two can be compared
        "output": (output if isinstance(output, str) else json.dumps(output)) if status == "SUCCEEDED" else None,
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
        "error": execution.error,
        "cause": execution.cause,
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": STATUS_CHANGE,
        "source": "aws.states",
        "account": execution.account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [execution.exec_arn],
        "detail": detail,
    }


def user_data_never_runs(
    stack: ExitStack,
    on_launch: Callable[[Any, str | None], None],
    on_leave_running: Callable[[Any], None],
) -> None:
    """moto stores user data and never runs it; EC2 runs it at first boot, and a stop or terminate ends what runs.
    Report each launched instance, with its instance profile (name or ARN: moto associates it only after
    RunInstances returns), and each stop or terminate, to the runner that runs user data as local processes."""
    from moto.ec2.models.instances import Instance, InstanceBackend

    original_run = InstanceBackend.run_instances
    original_stop = Instance.stop
    original_terminate = Instance.terminate

    def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original_run(self, *args, **kwargs)
        profile = kwargs.get("iam_instance_profile_arn") or kwargs.get("iam_instance_profile_name")
        if not profile and kwargs.get("launch_template"):
            from_template = self._get_template_from_args(kwargs["launch_template"]).data.get("IamInstanceProfile")
            profile = (from_template or {}).get("Arn") or (from_template or {}).get("Name")
        for instance in reservation.instances:
            on_launch(instance, profile)
        return reservation

    def stop(self: Any) -> Any:
        previous = original_stop(self)
        on_leave_running(self)
        return previous

    def terminate(self: Any) -> Any:
        previous = original_terminate(self)
        on_leave_running(self)
        return previous

    stack.enter_context(mock.patch.object(InstanceBackend, "run_instances", run_instances))
    stack.enter_context(mock.patch.object(Instance, "stop", stop))
    stack.enter_context(mock.patch.object(Instance, "terminate", terminate))


def launch_template_shutdown_behavior_ignored(stack: ExitStack) -> None:
    """moto ignores a launch template's InstanceInitiatedShutdownBehavior (the instance keeps `stop`); EC2 applies
    it unless RunInstances gives its own."""
    from moto.ec2.models.instances import InstanceBackend

    original_run = InstanceBackend.run_instances

    def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original_run(self, *args, **kwargs)
        if kwargs.get("launch_template") and not kwargs.get("instance_initiated_shutdown_behavior"):
            data = self._get_template_from_args(kwargs["launch_template"]).data
            behavior = data.get("InstanceInitiatedShutdownBehavior")
            if behavior:
                for instance in reservation.instances:
                    instance.instance_initiated_shutdown_behavior = behavior
        return reservation

    stack.enter_context(mock.patch.object(InstanceBackend, "run_instances", run_instances))


def sfn_stop_leaves_tasks_waiting(stack: ExitStack) -> None:
    """moto's StopExecution does not wake a task waiting for its token (or a heartbeat): the execution stays RUNNING
    until the token comes, and a task that then fails turns the stopped execution FAILED. On AWS it is ABORTED at
    once. Wake the waiting tasks, and let nothing but the stop decide how a stopped execution ends. moto also drops
    StopExecution's `error` and `cause`; AWS reports them on the aborted execution."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.responses import StepFunctionResponse

    original_stop = Execution.stop
    original_set_error = Environment.set_error
    original_set_timed_out = Environment.set_timed_out
    original_response = StepFunctionResponse.stop_execution
    original_reflect: Any = BaseExecutionWorkerCommunication._reflect_execution_status
    request = threading.local()

    def stop_execution_response(self: Any) -> Any:
        request.given = (self._get_param("error"), self._get_param("cause"))
        try:
            return original_response(self)
        finally:
            request.given = None

    def reflect_execution_status(self: Any) -> None:
        original_reflect(self)
        program_state = self.execution.exec_worker.env.program_state()
        if isinstance(program_state, ProgramStopped):
            self.execution.error = program_state.error or None
            self.execution.cause = program_state.cause or None

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        given = getattr(request, "given", None)
        if given is not None and not error and not cause:
            error, cause = given
        worker = self.exec_worker
        deadline = time.monotonic() + 2.0
        while worker is not None and worker.env is None and time.monotonic() < deadline:
            time.sleep(0.001)  # started a moment ago: its interpreter has not set up yet
        original_stop(self, stop_date, error, cause)
        env = getattr(worker, "env", None)
        if env is not None:
            for endpoint in list(env.callback_pool_manager._pool.values()):
                endpoint.interrupt_all()

    def set_error(self: Any, error: Any) -> None:
        if not isinstance(self._program_state, ProgramStopped):
            original_set_error(self, error)

    def set_timed_out(self: Any) -> None:
        if not isinstance(self._program_state, ProgramStopped):
            original_set_timed_out(self)

    stack.enter_context(mock.patch.object(Execution, "stop", stop))
    stack.enter_context(mock.patch.object(StepFunctionResponse, "stop_execution", stop_execution_response))
    stack.enter_context(
        mock.patch.object(BaseExecutionWorkerCommunication, "_reflect_execution_status", reflect_execution_status)
    )
    stack.enter_context(mock.patch.object(Environment, "set_error", set_error))
    stack.enter_context(mock.patch.object(Environment, "set_timed_out", set_timed_out))


def public_ami_parameters_missing(account_id: str, region: str, names: list[str], stand_in: str) -> list[str]:
    """moto serves only Amazon Linux's public AMI parameters; the app's training AMI parameter (AWS's Deep Learning
    AMI, `/aws/service/deeplearning/...`) is missing and reserved for PutParameter. Each missing name gets the AMI id
    of the `stand_in` parameter (Amazon Linux of the same architecture). Returns the names it added."""
    from datetime import datetime

    from moto.ssm.models import Parameter, ssm_backends

    backend = ssm_backends[account_id][region]
    source = backend.get_parameter(stand_in)
    if source is None:
        raise LookupError(f"moto has no {stand_in} to stand in for the training AMI")
    added = []
    for name in names:
        if backend.get_parameter(name) is not None:
            continue
        backend._parameters[name].append(
            Parameter(  # type: ignore[abstract]
                account_id=account_id,
                name=name,
                value=source.value,
                parameter_type="String",
                description=f"ec2ops.local stand-in: {stand_in}",
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(UTC),
                version=1,
                data_type="aws:ec2:image",
            )
        )
        added.append(name)
    return added


def sfn_send_task_failure_drops_cause(stack: ExitStack) -> None:
    """moto's SendTaskFailure keeps the error but drops the cause; the Catch and the execution then lose the
    instance's explanation (`training command exited with code 3`)."""
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    stack.enter_context(mock.patch.object(StepFunctionResponse, "send_task_failure", send_task_failure))


def sfn_heartbeat_timeout_reported_as_timeout(stack: ExitStack) -> None:
    """moto reports a missed heartbeat as `States.Timeout`; AWS names it `States.HeartbeatTimeout`, so a run that
    died silently reads as one that ran too long."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = StateTaskServiceCallback._from_error

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, HeartbeatTimeoutError):
            name = StatesErrorNameType.StatesHeartbeatTimeout
            return FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=name),
                event_type=HistoryEventType.TaskTimedOut,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskTimedOutEventDetails=TaskTimedOutEventDetails(error=name.to_name())
                ),
            )
        return original(self, env, ex)

    stack.enter_context(mock.patch.object(StateTaskServiceCallback, "_from_error", from_error))
