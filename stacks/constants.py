"""Names and limits shared by the stack, its constructs and the infrastructure tests."""

from __future__ import annotations

APP_NAME = "ec2ops"
CONTEXT_KEY = "ec2ops"

# Tags on every resource; the tag keys ec2ops reads on EC2 resources are below.
TAG_APP = "ec2ops:app"
TAG_ENVIRONMENT = "ec2ops:environment"
TAG_MANAGED = "ec2ops:managed"  # an instance ec2ops may act on carries ec2ops:managed=true
TAG_CREATED_BY = "ec2ops:created-by"  # snapshots ec2ops created carry ec2ops:created-by=ec2ops
# S3 lifecycle filters cannot match `<env>/<run_id>/logs/` (prefixes take no wildcard): objects are tagged instead.
TAG_ARTIFACT = "ec2ops:artifact"
ARTIFACT_LOGS = "logs"
ARTIFACT_MODEL = "model"

# Config bounds (cdk.json context "ec2ops").
ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9-]{0,15}$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"
MAX_AVAILABILITY_ZONES = 6
SNAPSHOT_POLL_SECONDS = (1, 300)
SNAPSHOT_TIMEOUT_MINUTES = (1, 1440)
SNAPSHOT_RETAIN_COUNT = (1, 1000)
SNAPSHOT_RETAIN_DAYS = (1, 3650)
RESIZE_POLL_SECONDS = (1, 300)
RESIZE_STOP_TIMEOUT_MINUTES = (1, 60)
RESIZE_START_TIMEOUT_MINUTES = (1, 60)
RESIZE_STATUS_CHECK_TIMEOUT_MINUTES = (1, 60)
RESIZE_ROLLBACK_ATTEMPTS = (1, 20)

# CloudWatch Logs accepts only these retention periods (days) -> the CDK RetentionDays member.
LOG_RETENTION_DAYS: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}

# Network
VPC_CIDR = "10.42.0.0/16"
PUBLIC_SUBNET_MASK = 24
HTTPS_PORT = 443

# Storage
MODEL_COLD_TIER_AFTER_DAYS = 90
NONCURRENT_VERSION_EXPIRY_DAYS = 30
INCOMPLETE_UPLOAD_EXPIRY_DAYS = 7
ACCESS_LOG_PREFIX = "s3-access/main/"
FLOW_LOG_PREFIX = "vpc-flow-logs/"
LEDGER_PARTITION_KEY = "pk"
LEDGER_SORT_KEY = "sk"
LEDGER_TTL_ATTRIBUTE = "expires_at"

# Lambda
LAMBDA_ASSET_DIR = "lambdas"
LAMBDA_MEMORY_MB = 256
LAMBDA_TIMEOUT_SECONDS = 60
POWERTOOLS_ACCOUNT = "017000801446"  # AWS-managed public Powertools layers
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python313-x86_64"
POWERTOOLS_SERVICE_NAME = "ec2ops"
POWERTOOLS_LOG_LEVEL = "INFO"

# Notifications
TOPIC_NAME_SUFFIX = "notifications"

# The snapshot workflow
SNAPSHOT_STATE_MACHINE = "ec2ops-snapshot"
SNAPSHOT_FUNCTIONS: dict[str, str] = {  # short name -> handler
    "plan": "ec2ops_lambda.handlers.snapshot.plan",
    "progress": "ec2ops_lambda.handlers.snapshot.progress",
    "prune": "ec2ops_lambda.handlers.snapshot.prune",
    "record": "ec2ops_lambda.handlers.snapshot.record",
    "record-failure": "ec2ops_lambda.handlers.snapshot.record_failure",
}
SNAPSHOT_COMPLETED_SUBJECT = "ec2ops snapshot completed"
# The state machine gives up only as a backstop: the progress Lambda raises SnapshotTimeout first.
STATE_MACHINE_TIMEOUT_MARGIN_MINUTES = 30


def snapshot_function_name(short: str) -> str:
    """`plan` -> `ec2ops-snapshot-plan`: the deployed name the console and the emulator show."""
    return f"{SNAPSHOT_STATE_MACHINE}-{short}"


# The resize workflow (docs/design/resize-workflow.md)
RESIZE_STATE_MACHINE = "ec2ops-resize"
RESIZE_FUNCTIONS: dict[str, str] = {  # short name -> handler
    "plan": "ec2ops_lambda.handlers.resize_plan.plan",
    "lock": "ec2ops_lambda.handlers.resize.lock",
    "drive": "ec2ops_lambda.handlers.resize.drive",
    "finish": "ec2ops_lambda.handlers.resize.finish",
}
RESIZE_NOTIFY_SUBJECT = "ec2ops resize"
RESIZE_LOCK_WORKFLOW = "resize"  # the lock item's `workflow`
RESIZE_MAX_CANDIDATES = 6  # the target and at most 5 fallback types
# Revert schedules: EventBridge Scheduler one-time schedules `ec2ops-revert-<instance_id>` in this group.
RESIZE_SCHEDULE_GROUP = "default"
RESIZE_SCHEDULE_PREFIX = "ec2ops-revert-"


def resize_function_name(short: str) -> str:
    """`drive` -> `ec2ops-resize-drive`."""
    return f"{RESIZE_STATE_MACHINE}-{short}"


# The spot failover workflow (docs/spot-failover.md)
SPOT_STATE_MACHINE = "ec2ops-spot-failover"
SPOT_FUNCTIONS: dict[str, str] = {  # short name -> handler
    "assess": "ec2ops_lambda.handlers.spot.assess",
    "choose": "ec2ops_lambda.handlers.spot.choose",
    "launch": "ec2ops_lambda.handlers.spot.launch",
    "promote": "ec2ops_lambda.handlers.spot.promote",
    "record": "ec2ops_lambda.handlers.spot.record",
    "record-failure": "ec2ops_lambda.handlers.spot.record_failure",
}
SPOT_NOTIFY_SUBJECT = "ec2ops spot failover"
SPOT_DETAIL_TYPES = ("EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation")
SPOT_BAD_POOL_MINUTES = (1, 10080)
SPOT_LAUNCH_DEADLINE_SECONDS = (10, 840)
SPOT_POLL_SECONDS = (1, 30)
SPOT_LAUNCH_TIMEOUT_MARGIN_SECONDS = 30  # the launch Lambda's timeout: its deadline plus this
SPOT_STATE_MACHINE_TIMEOUT_MINUTES = 30
TAG_REPLACES = "ec2ops:replaces"  # a replacement ec2ops launched names the instance it replaces


def spot_function_name(short: str) -> str:
    """`launch` -> `ec2ops-spot-failover-launch`."""
    return f"{SPOT_STATE_MACHINE}-{short}"


# The training run workflow (docs/training-runs.md)
TRAINING_STATE_MACHINE = "ec2ops-training-run"
TRAINING_FUNCTIONS: dict[str, str] = {  # short name -> handler
    "plan": "ec2ops_lambda.handlers.training.plan",
    "acquire": "ec2ops_lambda.handlers.training.acquire",
    "launch": "ec2ops_lambda.handlers.training.launch",
    "finish": "ec2ops_lambda.handlers.training.finish",
    "cleanup": "ec2ops_lambda.handlers.training.cleanup",
    "reap": "ec2ops_lambda.handlers.training.reap",
    "sweep": "ec2ops_lambda.handlers.training.sweep",
}
TRAINING_NOTIFY_SUBJECT = "ec2ops training run"
TRAINING_DEFAULT_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
TRAINING_HEARTBEAT_SECONDS = (1, 600)
TRAINING_HEARTBEAT_TIMEOUT_SECONDS = (3, 3600)
TRAINING_ROOT_VOLUME_GIB = (20, 16384)
TRAINING_SWEEP_MINUTES = (1, 60)
TRAINING_STALE_AFTER_MINUTES = (1, 1440)
TRAINING_STATE_MACHINE_TIMEOUT_HOURS = 80  # above the longest run (72 h) plus resumes' launches and cleanup
TAG_RUN_ID = "ec2ops:run-id"  # every training instance carries its run id
SCRIPTS_PREFIX = "cached-datasets/scripts/"


def training_function_name(short: str) -> str:
    """`launch` -> `ec2ops-training-run-launch`."""
    return f"{TRAINING_STATE_MACHINE}-{short}"
