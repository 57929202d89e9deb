"""LocalCloud: the synthesized ec2ops app running on moto, in-process. The one entry point of ec2ops.local.

with LocalCloud() as cloud:
    iid = cloud.launch_instance("t3.2xlarge", managed=True)
    result = cloud.run("snapshot", {"instance_id": iid, "reason": "before upgrade"})

`LocalCloud(run_user_data=True)` also runs launched instances' user data as local processes (see instances.py),
and `cloud.interrupt(instance_id)` does to an instance what AWS does to a reclaimed spot instance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

from ec2ops.local import moto_gaps
from ec2ops.local.assembly import AssemblyDeployer, Deployment, check_lambda_asset_is_current, read_assembly
from ec2ops.local.capacity import CapacityReservations
from ec2ops.local.clock import EmulatorClock
from ec2ops.local.counters import CallCounter, ExecutionCounts
from ec2ops.local.ec2_timing import Durations, Ec2Timing
from ec2ops.local.events import EventRouter
from ec2ops.local.faults import ErrorResponse, FaultInjector
from ec2ops.local.instances import InstanceRunner
from ec2ops.local.lambda_runtime import LambdaRuntime
from ec2ops.local.market import SpotMarket
from ec2ops.local.server import LoopbackServer

REPO_ROOT = Path(__file__).resolve().parents[2]
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
_AMI_PARAMETERS = {
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
INTERRUPTION_NOTICE = timedelta(minutes=2)
_INTERRUPTION_ACTIONS = ("terminate", "stop", "hibernate")
_SPOT_REASONS = {
    "terminate": ("Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination"),
    "stop": ("Server.SpotInstanceShutdown", "Server.SpotInstanceShutdown: Spot instance shutdown"),
    "hibernate": ("Server.SpotInstanceShutdown", "Server.SpotInstanceShutdown: Spot instance shutdown"),
}


@dataclass(frozen=True)
class _Interruption:
    instance_id: str
    action: str
    at: datetime


@dataclass
class ExecutionResult:
    """What a user reads off an execution: its status, output, or error and cause, and what it did."""

    arn: str
    name: str
    state_machine: str
    status: str
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None
    counts: ExecutionCounts = field(default_factory=ExecutionCounts)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class ExecutionStillRunning(TimeoutError):
    """An execution did not finish within the real-time limit given to `wait`."""


class LocalCloud:
    """The embedded AWS: moto + the synthesized app + EC2 timing, faults, event routing and a fast clock."""

    def __init__(
        self,
        cdk_out: str | Path = REPO_ROOT / "cdk.out",
        *,
        region: str = "us-east-1",
        start: datetime | None = None,
        seed: int = 7,
        durations: Durations | None = None,
        lambda_source: str | Path = REPO_ROOT / "lambdas",
        lambda_log_level: str = "WARNING",
        verify_asset: bool = True,
        run_user_data: bool = False,
        instance_env: Mapping[str, str] | None = None,
    ) -> None:
        self.cdk_out = Path(cdk_out)
        self.region = region
        self.clock = EmulatorClock(start)
        self.timing = Ec2Timing(self.clock, durations, seed=seed)
        self.faults = FaultInjector()
        self.counter = CallCounter()
        self.lambda_source = Path(lambda_source)
        self.runtime = LambdaRuntime(
            self.lambda_source,
            region=region,
            counter=self.counter,
        )
        self._lambda_log_level = lambda_log_level
        self._verify_asset = verify_asset
        self.router = EventRouter(self._start_execution, self._invoke_function_arn)
        self.market = SpotMarket({}, seed=seed)
        self.capacity = CapacityReservations(self.clock)
        self.deployments: dict[str, Deployment] = {}
        self._executions: dict[str, str] = {}  # arn -> state machine name
        self._stack = ExitStack()
        self._clients: dict[str, Any] = {}
        self._notification_queue: str | None = None
        self._server: LoopbackServer | None = None
        self._server_lock = threading.Lock()
        self.run_user_data = run_user_data
        self.instances = InstanceRunner(
            clock=self.clock,
            timing=self.timing,
            region=region,
            account_id=self.account_id,
            endpoint_url=self.serve,
            instance_env=instance_env,
        )
        self._interruptions: dict[str, _Interruption] = {}
        self._interruptions_lock = threading.RLock()

    # --- lifecycle --------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalCloud:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        stack = self._stack
        stack.enter_context(mock.patch.dict(os.environ, {**_FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": self.region}))
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        stack.callback(self._join_event_targets)  # Lambda targets still running end before moto goes
        moto_gaps.moto_time_is_wall_clock(stack, self.clock)
        moto_gaps.instant_ec2_transitions(stack, self.timing)
        moto_gaps.launch_template_shutdown_behavior_ignored(stack)
        if self.run_user_data:
            moto_gaps.user_data_never_runs(stack, self.instances.launched, self.instances.left_running)
        moto_gaps.run_instances_ignores_client_token(stack)
        moto_gaps.sfn_send_task_failure_drops_cause(stack)
        moto_gaps.sfn_heartbeat_timeout_reported_as_timeout(stack)
        moto_gaps.wait_and_retry_really_sleep(stack, self.clock)
        moto_gaps.aws_sdk_error_names_lowercase(stack)
        moto_gaps.jsonpath_definite_index_returns_list(stack)
        moto_gaps.sdk_results_carry_datetimes(stack)
        moto_gaps.register_image_ignores_block_device_mappings(stack)
        moto_gaps.status_checks_always_ok(stack, self.timing)
        moto_gaps.sfn_nested_execution_shapes_unconverted(stack)
        moto_gaps.capacity_reservations_not_implemented(stack, self.capacity, self.region)
        moto_gaps.lambda_invoke_echoes_payload(stack, self._invoke_function)
        moto_gaps.event_targets_not_delivered(stack, self.router)
        moto_gaps.sfn_emits_no_status_change_events(stack, self.router, self._emit_event, self.clock.now)
        moto_gaps.sfn_stop_leaves_tasks_waiting(stack)
        moto_gaps.botocore_calls_unobserved(stack, self._on_call)
        moto_gaps.sfn_threads_carry_no_execution(stack)
        moto_gaps.spot_market_is_constant(stack, self.market, self.clock, self.region)
        self._patch_lambda_clock(stack)
        self.clock.on_advance(self._on_clock_advance)
        self._deploy()
        # Runs first on exit, while moto is still patched: no execution of this emulator outlives it and wakes up
        # later inside the next emulator's backends (moto's are global to the process).
        stack.callback(self._stop_running_executions)
        if self.run_user_data:
            self.serve()  # before any launch: instance processes reach the emulator here
        stack.callback(self.instances.close)  # processes end before the server and moto go

    def _patch_lambda_clock(self, stack: ExitStack) -> None:
        """The Lambda code reads time only through ec2ops_lambda.clock: point it at the emulator clock."""
        try:
            from ec2ops_lambda import clock as lambda_clock  # type: ignore[attr-defined,import-not-found,unused-ignore]
        except ImportError:
            return
        stack.enter_context(mock.patch.object(lambda_clock, "utcnow", self.clock.now))
        stack.enter_context(mock.patch.object(lambda_clock, "sleep", self.clock.sleep))

    def _deploy(self) -> None:
        zones = self.ec2.describe_availability_zones()["AvailabilityZones"]
        self.market.zone_ids.update({zone["ZoneName"]: zone["ZoneId"] for zone in zones})
        self.capacity.zone_ids.update(self.market.zone_ids)
        azs = [zone["ZoneName"] for zone in zones]
        deployer = AssemblyDeployer(self.client, self.region, azs)
        for stack_name, template, _path in read_assembly(self.cdk_out):
            if self._verify_asset:
                check_lambda_asset_is_current(self.cdk_out, template, self.lambda_source)
            self.deployments[stack_name] = deployer.deploy(stack_name, template)
        self._subscribe_to_notifications()
        ami_parameters = sorted(
            {
                environment["TRAINING_AMI_PARAMETER"]
                for deployment in self.deployments.values()
                for environment in deployment.function_environments.values()
                if environment.get("TRAINING_AMI_PARAMETER", "").startswith("/aws/service/")
            }
        )
        moto_gaps.public_ami_parameters_missing(self.account_id, self.region, ami_parameters, _AMI_PARAMETERS["x86_64"])

    def serve(self, port: int = 0) -> str:
        """Serve this emulator on 127.0.0.1 for other processes; returns the endpoint URL."""
        with self._server_lock:
            if self._server is None:
                self._server = LoopbackServer(self._on_call, port)
                self._stack.callback(self._server.stop)
            return self._server.endpoint_url

    # --- hooks ---------------------------------------------------------------------------------------------
    def _on_call(self, service: str, operation: str) -> ErrorResponse | None:
        if service == "ec2":
            self.timing.settle()
        self.counter.api_call(service, operation)
        return self.faults.take(service, operation)

    def _on_clock_advance(self, now: datetime) -> None:
        self.timing.settle(now)
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[self.account_id][self.region]
        started = self.router.fire_due_schedules(now, backend)
        for arn in started:
            self._executions.setdefault(arn, arn.split(":")[-2])
        self._interrupt_due(now)

    def _invoke_function(self, function: Any, payload: Any) -> tuple[bytes, str | None]:
        environment = dict(function.environment_vars or {})
        environment["POWERTOOLS_LOG_LEVEL"] = self._lambda_log_level
        return self.runtime.invoke(
            function_name=function.function_name,
            function_arn=function.function_arn,
            handler=function.handler,
            environment=environment,
            memory_mb=int(function.memory_size),
            timeout_s=int(function.timeout),
            payload=payload,
        )

    def _join_event_targets(self) -> None:
        try:
            self.router.join(10.0)
        except TimeoutError:
            logging.getLogger(__name__).warning("Lambda targets of EventBridge rules still ran when the cloud closed")

    def invoke(self, function_name: str, payload: Any) -> Any:
        """Invoke a deployed function as EventBridge or the console would; its error raises RuntimeError."""
        answer = self.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(payload).encode())
        body = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function_name} failed: {body.get('errorType')}: {body.get('errorMessage')}")
        return body

    def _invoke_function_arn(self, function_arn: str, payload: str) -> tuple[bytes, str | None]:
        """An EventBridge rule's Lambda target: the function's handler with the event (same runtime as tasks)."""
        from moto.awslambda.utils import get_backend

        function = get_backend(self.account_id, self.region).get_function(function_arn)
        return self._invoke_function(function, json.loads(payload))

    def _emit_event(self, event: dict[str, Any]) -> None:
        """An event that an AWS service sends (not an API call of the account): straight into the default bus."""
        from moto.events.models import events_backends

        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event.get("detail", {})),
            "Resources": list(event.get("resources", [])),
            "Time": event.get("time") or self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for result in events_backends[self.account_id][self.region].put_events([entry]):
            if "ErrorCode" in result:
                raise ValueError(f"EventBridge refused the event: {result}")

    def _stop_running_executions(self, timeout: float = 10.0) -> None:
        """Stop what still runs (a test that ended mid-run) and wait, briefly, for it to end."""
        running: list[str] = []
        for deployment in self.deployments.values():
            for arn in deployment.state_machines.values():
                for execution in self.sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
                    with contextlib.suppress(Exception):
                        self.sfn.stop_execution(executionArn=execution["executionArn"], cause="ec2ops.local closed")
                    running.append(execution["executionArn"])
        deadline = time.monotonic() + timeout
        for arn in running:
            while time.monotonic() < deadline:
                if self.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                    break
                time.sleep(0.05)

    def _start_execution(self, state_machine_arn: str, name: str, payload: str) -> str:
        arn: str = self.sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=payload)["executionArn"]
        self._executions[arn] = state_machine_arn.rsplit(":", maxsplit=1)[-1]
        return arn

    # --- clients and resources -------------------------------------------------------------------------------
    account_id = "123456789012"

    def client(self, service: str) -> Any:
        """A boto3 client bound to the emulator (cached per service)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def ddb(self) -> Any:
        return self.client("dynamodb")

    @property
    def sfn(self) -> Any:
        return self.client("stepfunctions")

    @property
    def sns(self) -> Any:
        return self.client("sns")

    @property
    def app(self) -> Deployment:
        """The app's (first) stack deployment."""
        return next(iter(self.deployments.values()))

    def _only(self, found: dict[str, str], what: str) -> str:
        if len(found) != 1:
            raise LookupError(f"expected one {what} in the app, found {len(found)}: {sorted(found)}")
        return next(iter(found.values()))

    @property
    def ledger_table(self) -> str:
        return self._only(self.app.tables, "DynamoDB table")

    @property
    def topic_arn(self) -> str:
        return self._only(self.app.topics, "SNS topic")

    def state_machine_arn(self, name: str) -> str:
        """`snapshot` or `ec2ops-snapshot` -> the deployed state machine's ARN."""
        machines = self.app.state_machines
        for candidate in (name, f"ec2ops-{name}"):
            if candidate in machines:
                return machines[candidate]
        raise LookupError(f"no state machine {name!r}; deployed: {sorted(machines)}")

    # --- instances -------------------------------------------------------------------------------------------
    def launch_instance(
        self,
        instance_type: str,
        *,
        managed: bool = True,
        market: str = "on-demand",
        tags: dict[str, str] | None = None,
        availability_zone: str | None = None,
        extra_volumes_gib: tuple[int, ...] = (),
        root_volume_gib: int = 8,
        running: bool = True,
    ) -> str:
        """A realistic instance in the app's VPC: AL2023 AMI of the type's architecture, EBS root, tags.

        `running=True` gives an instance that was already running before the story starts; `False` leaves it
        `pending` for the launch time, as RunInstances does.
        """
        if market not in ("on-demand", "spot"):
            raise ValueError(f"market must be 'on-demand' or 'spot' (got {market!r})")
        info = self.ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]
        architecture = "arm64" if "arm64" in info["ProcessorInfo"]["SupportedArchitectures"] else "x86_64"
        image_id = self.client("ssm").get_parameter(Name=_AMI_PARAMETERS[architecture])["Parameter"]["Value"]
        subnet = self._subnet_in(availability_zone)
        all_tags = {
            "Name": f"local-{instance_type}",
            **({"ec2ops:managed": "true"} if managed else {}),
            **(tags or {}),
        }
        devices = [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"VolumeSize": root_volume_gib, "VolumeType": "gp3", "DeleteOnTermination": True},
            }
        ]
        for index, size in enumerate(extra_volumes_gib):
            devices.append(
                {
                    "DeviceName": f"/dev/sd{chr(ord('f') + index)}",
                    "Ebs": {"VolumeSize": size, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            )
        kwargs: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": subnet,
            "BlockDeviceMappings": devices,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ],
            "MetadataOptions": {"HttpTokens": "required"},
        }
        if self.app.security_groups:
            kwargs["SecurityGroupIds"] = self.app.security_groups[:1]
        if market == "spot":
            kwargs["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        instance_id: str = self.ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
        if running:
            self.timing.complete(instance_id)
        return instance_id

    def _subnet_in(self, availability_zone: str | None) -> str:
        subnets = self.app.subnets or {  # an app without a VPC of its own launches into the default VPC
            subnet["SubnetId"]: subnet["AvailabilityZone"]
            for subnet in self.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        }
        if availability_zone is None:
            return sorted(subnets)[0] if len(subnets) == 1 else min(subnets, key=lambda s: subnets[s])
        for subnet, zone in subnets.items():
            if zone == availability_zone:
                return subnet
        raise LookupError(f"the app has no subnet in {availability_zone}; it has {sorted(set(subnets.values()))}")

    def instance(self, instance_id: str) -> dict[str, Any]:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        result: dict[str, Any] = reservations[0]["Instances"][0]
        return result

    def instance_history(self, instance_id: str) -> list[str]:
        """The states the instance went through, oldest first."""
        return [state for _when, state in self.timing.history(instance_id)]

    # --- instances run locally (run_user_data) ---------------------------------------------------------------
    def instance_root(self, instance_id: str) -> Path:
        """The instance's disk: the sandbox its user data runs in (`user-data`, `console.log`, `opt-ec2ops/`)."""
        return self.instances.record(instance_id).root

    def console_output(self, instance_id: str) -> str:
        """What the instance's user data wrote on stdout and stderr so far (EC2's console output)."""
        return self.instances.console_output(instance_id)

    def instance_process(self, instance_id: str) -> subprocess.Popen[bytes] | None:
        """The process running the instance's user data (None for an instance that runs nothing locally)."""
        return self.instances.process(instance_id)

    def kill_instance_process(self, instance_id: str) -> None:
        """SIGKILL the instance's processes and leave the instance `running`: an instance that dies silently."""
        self.instances.kill_process(instance_id)

    def wait_for_instance_process(self, instance_id: str, timeout: float = 30.0) -> int | None:
        """Wait (real seconds) until the user data process exits (and a shutdown it asked for is applied);
        returns its exit status (negative: the signal that killed it). TimeoutError when it still runs."""
        return self.instances.wait(instance_id, timeout)

    # --- spot interruptions ----------------------------------------------------------------------------------
    def interrupt(self, instance_id: str, action: str = "terminate") -> list[str]:
        """What AWS does to a reclaimed spot instance: the rebalance recommendation and the two-minute warning
        (on the instance's metadata service and as EventBridge events), then, when the emulator clock has passed
        two more minutes, the interruption itself (`terminate`, or `stop` / `hibernate`: stopped), with state
        reason `Server.SpotInstanceTermination` (or `Server.SpotInstanceShutdown`).

        Returns the ARNs of the executions the app's rules started for the two events."""
        if action not in _INTERRUPTION_ACTIONS:
            raise ValueError(f"action is one of {_INTERRUPTION_ACTIONS}, not {action!r}")
        instance = self._moto_instance(instance_id)
        if instance.lifecycle != "spot":
            raise ValueError(f"{instance_id} is an on-demand instance: only spot instances are interrupted")
        if instance._state.name not in ("pending", "running"):
            raise ValueError(f"{instance_id} is {instance._state.name}: there is nothing left to interrupt")
        now = self.clock.now()
        at = now + INTERRUPTION_NOTICE
        metadata = self.instances.metadata(instance_id)
        if metadata is not None:
            metadata.announce_rebalance(now)
            metadata.announce_interruption(action, at)
        with self._interruptions_lock:
            self._interruptions[instance_id] = _Interruption(instance_id, action, at)
        arn = f"arn:aws:ec2:{self.region}:{self.account_id}:instance/{instance_id}"
        common = {
            "version": "0",
            "source": "aws.ec2",
            "account": self.account_id,
            "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [arn],
        }
        rebalance = {
            **common,
            "id": str(uuid.uuid4()),
            "detail-type": "EC2 Instance Rebalance Recommendation",
            "detail": {"instance-id": instance_id},
        }
        warning = {
            **common,
            "id": str(uuid.uuid4()),
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "detail": {"instance-id": instance_id, "instance-action": action},
        }
        return self.put_event(rebalance) + self.put_event(warning)

    def _interrupt_due(self, now: datetime) -> None:
        with self._interruptions_lock:
            due = [i for i in self._interruptions.values() if i.at <= now]
            for interruption in due:
                del self._interruptions[interruption.instance_id]
        for interruption in due:
            instance = self._moto_instance(interruption.instance_id)
            if instance._state.name not in ("pending", "running"):
                continue
            code, message = _SPOT_REASONS[interruption.action]
            if interruption.action == "terminate":
                instance.terminate()  # spot interruption ignores termination protection, as on AWS
            else:
                instance.stop()
            self.timing.set_reason(instance.id, code, message)
            self.timing.complete(instance.id)  # the reclaimed capacity is gone at once
            instance._reason = f"Service initiated ({now:%Y-%m-%d %H:%M:%S} GMT)"

    def _moto_instance(self, instance_id: str) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account_id][self.region].get_instance(instance_id)

    # --- executions ----------------------------------------------------------------------------------------------
    def start(self, workflow: str, payload: Any, *, name: str | None = None) -> str:
        """Start `ec2ops-<workflow>` with this input; returns the execution ARN."""
        arn = self.state_machine_arn(workflow)
        return self._start_execution(arn, name or f"{workflow}-{uuid.uuid4().hex[:16]}", json.dumps(payload))

    def run(self, workflow: str, payload: Any, *, name: str | None = None, timeout: float = 120.0) -> ExecutionResult:
        """Start and wait."""
        return self.wait(self.start(workflow, payload, name=name), timeout=timeout)

    def wait(self, execution_arn: str, *, timeout: float = 120.0) -> ExecutionResult:
        """Wait (real seconds) until the execution ends; its emulator time passes as fast as it waits."""
        deadline = time.monotonic() + timeout
        while True:
            description = self.sfn.describe_execution(executionArn=execution_arn)
            if description["status"] in _TERMINAL:
                # Its status change event reaches the rules' targets before the caller looks at them.
                self.router.wait_published(execution_arn, max(1.0, deadline - time.monotonic()))
                return self._result(description)
            if time.monotonic() > deadline:
                raise ExecutionStillRunning(f"{execution_arn} still {description['status']} after {timeout}s")
            time.sleep(0.005)

    def wait_all(self, *, timeout: float = 120.0) -> list[ExecutionResult]:
        """The results of every execution started so far (by hand, by events or by schedules), including those
        that the end of another started (rules on execution status changes)."""
        results: dict[str, ExecutionResult] = {}
        while pending := [arn for arn in list(self._executions) if arn not in results]:
            for arn in pending:
                results[arn] = self.wait(arn, timeout=timeout)
        return [results[arn] for arn in list(self._executions) if arn in results]

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def _result(self, description: dict[str, Any]) -> ExecutionResult:
        arn = description["executionArn"]
        counts = self.counter.for_execution(arn)
        for event in self.execution_history(arn):
            if event["type"].endswith("StateEntered"):
                counts.state_transitions += 1
                counts.states_entered[event["stateEnteredEventDetails"]["name"]] += 1
        output = description.get("output")
        return ExecutionResult(
            arn=arn,
            name=description["name"],
            state_machine=description["stateMachineArn"].split(":")[-1],
            status=description["status"],
            input=json.loads(description.get("input") or "null"),
            output=json.loads(output) if output else None,
            error=description.get("error"),
            cause=description.get("cause"),
            counts=counts,
        )

    # --- events, faults, records ---------------------------------------------------------------------------------
    def put_event(self, event: dict[str, Any]) -> list[str]:
        """Send an event as AWS would deliver it (the shape of ../shared/data/aws-events); returns the
        ARNs of the executions the app's rules started for it."""
        entry: dict[str, Any] = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event.get("detail", {})),
            "Resources": list(event.get("resources", [])),
        }
        try:
            entry["Time"] = datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00"))
        except ValueError:
            entry["Time"] = self.clock.now()
        with self.router.collect() as started:
            response = self.client("events").put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            raise ValueError(f"EventBridge refused the event: {response['Entries']}")
        return list(started)

    def inject_fault(
        self, service: str, operation: str, code: str, *, times: int = 1, message: str | None = None, after: int = 0
    ) -> None:
        """The next `times` calls of `service` `operation` (API names: "ec2", "StartInstances") fail with
        `code`, whoever makes them: a test, a state machine task or a Lambda. `after` lets that many calls
        through first (e.g. the third Lambda invocation of an execution)."""
        self.faults.inject(service, operation, code, times=times, message=message, after=after)

    def fail_next_snapshots(self, *, times: int = 1, message: str = "Snapshot failed: internal error") -> None:
        """The next `times` snapshots end in state `error` (after their normal duration)."""
        self.timing.fail_next_snapshots(times=times, message=message)

    def fall_back_on_next_start(self, *, times: int = 1, instance_id: str | None = None) -> None:
        """The next start 'succeeds', then the instance returns to `stopped` for lack of capacity."""
        self.timing.fall_back_on_next_start(times=times, instance_id=instance_id)

    def impair_next_start(self, *, times: int = 1, instance_id: str | None = None) -> None:
        """The next instance to reach `running` fails its status checks (`impaired`) until it is stopped."""
        self.timing.impair_next_start(times=times, instance_id=instance_id)

    def set_reservable(self, instance_type: str, availability_zone: str, reservable: bool) -> None:
        """Whether a capacity reservation of this type can be made in this AZ (default: yes)."""
        self.capacity.set_reservable(instance_type, availability_zone, reservable)

    def ledger_items(self, pk: str | None = None) -> list[dict[str, Any]]:
        """The ledger's items (plain Python values), optionally for one partition, in key order."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        kwargs: dict[str, Any] = {"TableName": self.ledger_table}
        if pk is not None:
            items = self.ddb.query(
                **kwargs, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
            )["Items"]
        else:
            items = self.ddb.scan(**kwargs)["Items"]
        plain = [{k: deserializer.deserialize(v) for k, v in item.items()} for item in items]
        return sorted(plain, key=lambda item: (item["pk"], item["sk"]))

    def _subscribe_to_notifications(self) -> None:
        if not self.app.topics:
            return
        sqs = self.client("sqs")
        url = sqs.create_queue(
            QueueName="ec2ops-local-notifications",
            Attributes={"MessageRetentionPeriod": "1209600"},  # 14 days, SQS's longest: tests jump days ahead
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._notification_queue = url

    def notifications(self) -> list[dict[str, Any]]:
        """SNS messages published on the app's topic since the last call: {subject, message}."""
        if self._notification_queue is None:
            return []
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self._notification_queue, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                found.append({"subject": envelope.get("Subject"), "message": envelope.get("Message")})
                sqs.delete_message(QueueUrl=self._notification_queue, ReceiptHandle=message["ReceiptHandle"])


def quiet_moto_logs() -> None:
    """moto's interpreter logs every caught state error at ERROR; the demo reads the execution instead."""
    for name in ("moto", "botocore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
