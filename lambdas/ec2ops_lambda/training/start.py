"""Plan, acquire and launch a training run: everything before the instance takes over.

Plan validates the input and the type against EC2 and resolves the AMI; nothing exists yet. Acquire creates the
env's state file with If-None-Match (the concurrency lock): a second run in the env is refused, naming the first.
Launch uploads the instance scripts this deployment ships, renders the user data, and runs the instance (IMDSv2
required, encrypted root deleted on termination, shutdown terminates, tagged with its run id and expiry); the state
machine then waits for the instance's task token.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from ec2ops_run_state import RunAlreadyActive, RunState, RunStateStore

from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.aws.training import EXPIRES_TAG, RUN_TAG, TrainingAws
from ec2ops_lambda.errors import (
    IncompatibleType,
    InvalidInput,
    RunActive,
    TrainingLaunchFailed,
    TypeNotOffered,
    UnknownInstanceType,
)
from ec2ops_lambda.models.common import iso
from ec2ops_lambda.models.training import parse_request
from ec2ops_lambda.pricing import bundled_price
from ec2ops_lambda.training import user_data
from ec2ops_lambda.training.config import TrainingSettings

WORKFLOW = "training-run"
MAX_TASK_TOKEN = 1024
"""Room kept in the user data for the Step Functions task token."""
SCRIPTS_PREFIX = "cached-datasets/scripts/"
CAPACITY_ERRORS = frozenset(
    {"InsufficientInstanceCapacity", "Unsupported", "InsufficientFreeAddressesInSubnet", "UnfulfillableCapacity"}
)


def run_partition(run_id: str) -> str:
    """The ledger partition of one run: its instances, transitions and cost."""
    return f"run#{run_id}"


def run_id_for(execution_id: str, now: datetime) -> str:
    """Readable and unique: `20261123-120000-3fa2c1`, the time and a digest of the execution."""
    return f"{now:%Y%m%d-%H%M%S}-{hashlib.sha256(execution_id.encode()).hexdigest()[:6]}"


def plan(raw: Any, *, execution_id: str, aws: TrainingAws, config: TrainingSettings, now: datetime) -> dict[str, Any]:
    """The validated request, the AMI, the AZs that offer the type: or a named error, with nothing touched."""
    request = parse_request(raw)
    architectures = aws.architectures(request.instance_type)
    if architectures is None:
        raise UnknownInstanceType(
            f"EC2 does not know the instance type {request.instance_type!r}. Nothing was launched."
        )
    zones = [zone for _, zone in config.subnet_zones()]
    offered = aws.offered_zones(request.instance_type, zones)
    subnets = [(subnet, zone) for subnet, zone in config.subnet_zones() if zone in offered]
    if not subnets:
        raise TypeNotOffered(
            f"{request.instance_type} is not offered in the app's AZs ({', '.join(zones)}). Nothing was launched."
        )
    image_id = aws.parameter(config.ami_parameter)
    image = aws.image(image_id)
    if image is None:
        raise IncompatibleType(f"the training AMI {image_id} (from {config.ami_parameter}) does not exist")
    if image.get("Architecture") not in architectures:
        raise IncompatibleType(
            f"the training AMI {image_id} is {image.get('Architecture')} but {request.instance_type} runs "
            f"{', '.join(sorted(architectures))}. Nothing was launched."
        )
    hours = request.max_runtime_hours
    run_plan = {
        "run_id": run_id_for(execution_id, now),
        "env": request.env,
        "request": request.model_dump(mode="json"),
        "image_id": image_id,
        "root_device_name": image.get("RootDeviceName", "/dev/xvda"),
        "subnets": [{"subnet_id": subnet, "availability_zone": zone} for subnet, zone in subnets],
        "timeout_seconds": max(60, int(hours * 3600)),
        "expires_at": iso(now + timedelta(hours=hours, minutes=config.expiry_margin_minutes)),
        "max_attempts": 1 + request.max_resumes,
        "requested_at": iso(now),
    }
    try:  # the user data must fit EC2's limit with the longest task token Step Functions issues
        user_data.render(settings_for(run_plan, 1, "t" * MAX_TASK_TOKEN, config))
    except ValueError as error:
        raise InvalidInput(
            f"the run's settings do not fit the instance's user data: {error}. Nothing was launched."
        ) from None
    return run_plan


def acquire(
    run_plan: dict[str, Any], *, execution_id: str, store: RunStateStore, aws: TrainingAws, bucket: str
) -> dict[str, Any]:
    """Create the state file (status initialization); RunActive names the run that holds the env. The run's input
    is kept beside its results as `<env>/<run_id>/config.json`."""
    request = run_plan["request"]
    state = RunState(
        run_id=run_plan["run_id"],
        environment=run_plan["env"],
        instance_type=request["instance_type"],
        training_config=request["training_config"],
        market=request["market"],
        execution_id=execution_id,
    )
    try:
        store.create(state)
        aws.put_object(
            f"{state.environment}/{state.run_id}/config.json",
            json.dumps({"run_id": state.run_id, "execution_id": execution_id, **request}, indent=2).encode(),
            bucket,
        )
    except RunAlreadyActive as refused:
        running = refused.running
        if running is not None and running.run_id == state.run_id:
            return {"run_id": state.run_id, "state_file": store.url}  # a retried step: the file is ours
        what = (
            f"run {running.run_id} ({running.status}, instance {running.instance_id or 'not launched yet'}, started "
            f"{running.timestamps.get('start', '?')})"
            if running is not None
            else "another run"
        )
        raise RunActive(
            f"env {state.environment!r} already has an active training run: {what}. Nothing was launched. Wait for "
            f"it to end, stop its execution, or start this run in another env. State file: {store.url}"
        ) from None
    return {"run_id": state.run_id, "state_file": store.url}


def _upload_scripts(aws: TrainingAws, bucket: str) -> None:
    """The instance scripts of this deployment, where bootstrap.sh downloads them from."""
    for name in user_data.INSTANCE_SCRIPTS:
        aws.put_object(f"{SCRIPTS_PREFIX}ec2ops/{name}", user_data.instance_script(name), bucket)


def settings_for(run_plan: dict[str, Any], attempt: int, task_token: str, config: TrainingSettings) -> dict[str, Any]:
    """What the instance is told: the contract of bootstrap.sh."""
    request = run_plan["request"]
    return {
        "run_id": run_plan["run_id"],
        "env": run_plan["env"],
        "bucket": config.bucket,
        "region": "",  # filled by launch from the client's region
        "instance_type": request["instance_type"],
        "market": request["market"],
        "attempt": attempt,
        "resume": attempt > 1,
        "command": request["command"],
        "training_config": request["training_config"],
        "python_env": request["python_env"],
        "data_prefix": request["data_prefix"],
        "task_token": task_token,
        "heartbeat_seconds": config.heartbeat_seconds,
        "log_upload_seconds": config.log_upload_seconds,
        "scripts_prefix": SCRIPTS_PREFIX,
    }


def launch(
    run_plan: dict[str, Any],
    attempt: int,
    task_token: str,
    *,
    aws: TrainingAws,
    store: RunStateStore,
    ledger: Ledger,
    config: TrainingSettings,
    execution_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Run the instance in the first AZ with capacity; record it in the state file and the ledger."""
    request = run_plan["request"]
    run_id = run_plan["run_id"]
    settings = settings_for(run_plan, attempt, task_token, config)
    settings["region"] = aws.client.meta.region_name
    rendered = user_data.render(settings)
    _upload_scripts(aws, config.bucket)
    tags = [
        {"Key": RUN_TAG, "Value": run_id},
        {"Key": EXPIRES_TAG, "Value": run_plan["expires_at"]},
        {"Key": "ec2ops:training-env", "Value": run_plan["env"]},
        {"Key": "ec2ops:attempt", "Value": str(attempt)},
        {"Key": "Name", "Value": f"ec2ops-training-{run_plan['env']}-{run_id}"},
    ]
    tried: list[str] = []
    for option in run_plan["subnets"]:
        zone = option["availability_zone"]
        launch_request: dict[str, Any] = {
            "ImageId": run_plan["image_id"],
            "InstanceType": request["instance_type"],
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": option["subnet_id"],
            "UserData": rendered,
            "ClientToken": hashlib.sha256(f"{run_id}|{attempt}|{zone}".encode()).hexdigest()[:64],
            "IamInstanceProfile": {"Arn": config.instance_profile_arn},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            "BlockDeviceMappings": [
                {
                    "DeviceName": run_plan["root_device_name"],
                    "Ebs": {
                        "VolumeSize": config.root_volume_gib,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if config.security_group:
            launch_request["SecurityGroupIds"] = [config.security_group]
        if request["market"] == "spot":
            launch_request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        try:
            instance = aws.run_instance(launch_request)
        except ClientError as error:
            code = error_code(error)
            tried.append(f"{zone}: {code}")
            if code in CAPACITY_ERRORS:
                continue
            raise TrainingLaunchFailed(
                f"RunInstances for run {run_id} failed in {zone} with {code}: {error}. Tried: {'; '.join(tried)}"
            ) from None
        instance_id = str(instance["InstanceId"])
        store.update(
            run_id, step=f"instance {instance_id} launched (attempt {attempt})", changes={"instance_id": instance_id}
        )
        price = aws.spot_price(request["instance_type"], zone, now) if request["market"] == "spot" else None
        on_demand = bundled_price(request["instance_type"])
        ledger.put(
            LedgerItem(
                instance_id=instance_id,
                kind="run-instance",
                change_id=f"{run_id}-{attempt}",
                execution_id=execution_id,
                workflow=WORKFLOW,
                keyed_at=now,
                at=now,
                what=f"launched {instance_id} ({request['instance_type']}, {request['market']}, {zone}) for run "
                f"{run_id}, attempt {attempt}",
                why=f"training run in env {run_plan['env']}",
                cost_effect={
                    "hourly_usd": price if price is not None else on_demand,
                    "on_demand_hourly_usd": on_demand,
                    "note": "billed from launch to termination",
                },
                detail={
                    "run_id": run_id,
                    "attempt": attempt,
                    "instance_type": request["instance_type"],
                    "market": request["market"],
                    "availability_zone": zone,
                    "launched_at": iso(now),
                },
                partition=run_partition(run_id),
            )
        )
        return {"instance_id": instance_id, "availability_zone": zone, "attempt": attempt}
    raise TrainingLaunchFailed(
        f"no AZ had capacity for {request['instance_type']} ({request['market']}) for run {run_id}: "
        f"{'; '.join(tried)}. Try another instance type, or market on-demand."
    )
