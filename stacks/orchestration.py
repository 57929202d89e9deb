"""The orchestration base: the notification topic, the one Lambda asset, the Powertools layer, a function factory."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, SymlinkFollowMode
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig

LAMBDA_SOURCE = Path(__file__).resolve().parents[1] / c.LAMBDA_ASSET_DIR
# What every function's own role gets before its caller grants anything: writing to its own log group.
LOG_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})


class Orchestration(Construct):
    """What every workflow shares, built once: a workflow asks `function()` for each Lambda and grants it the rest."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Ec2OpsConfig,
        ledger: dynamodb.ITable,
        key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._ledger = ledger
        self.key = key
        self.topic = self._build_topic()
        self.code = self._build_code()
        self.powertools = self._build_powertools_layer()
        self.functions: list[lambda_.Function] = []

    def _build_topic(self) -> sns.Topic:
        """Workflow results and alarms; TLS-only publishing; encrypted with the customer key when there is one."""
        topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{self._config.stack_name}-{c.TOPIC_NAME_SUFFIX}",
            display_name="ec2ops notifications",
            enforce_ssl=True,
            master_key=self.key,
        )
        if self.key is not None:
            # CloudWatch alarms publish to the topic, so they must be able to use its key.
            self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        else:
            NagSuppressions.add_resource_suppressions(
                topic,
                [
                    NagPackSuppression(
                        id="AwsSolutions-SNS2",
                        reason="Messages carry only instance/snapshot ids and outcomes, no secrets. The AWS-managed "
                        "aws/sns key would stop CloudWatch alarms from publishing, and a customer key bills monthly: "
                        "encryption is opt-in with enable_kms_key.",
                    )
                ],
            )
        return topic

    def _build_code(self) -> lambda_.Code:
        """One asset for every function: the handlers share domain modules, and one upload is cheaper than five."""
        # Symlinks are followed: the instance scripts (one source, shipped to the instance by the training
        # launch) and the run-state module live in instance_scripts/ and are linked into lambdas/.
        return lambda_.Code.from_asset(
            str(LAMBDA_SOURCE),
            exclude=["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache"],
            follow_symlinks=SymlinkFollowMode.ALWAYS,
        )

    def _build_powertools_layer(self) -> lambda_.ILayerVersion:
        """The AWS-managed public layer: Powertools and pydantic without packaging them (no Docker at synth)."""
        return lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", self._config.powertools_layer_arn)

    def function(
        self,
        construct_id: str,
        name: str,
        handler: str,
        environment: dict[str, str] | None = None,
        *,
        scope: Construct | None = None,
        description: str | None = None,
        timeout_seconds: int = c.LAMBDA_TIMEOUT_SECONDS,
    ) -> lambda_.Function:
        """A function with its own role that may only write its own logs; the caller grants what it needs."""
        owner = scope or self
        log_group = logs.LogGroup(
            owner,
            f"{construct_id}Logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=logs.RetentionDays[c.LOG_RETENTION_DAYS[self._config.log_retention_days]],
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            owner,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name}: its own log group, plus what its workflow grants",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            owner,
            construct_id,
            function_name=name,
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=self.code,
            layers=[self.powertools],
            memory_size=c.LAMBDA_MEMORY_MB,
            timeout=Duration.seconds(timeout_seconds),
            role=role,
            log_group=log_group,
            environment={**self.common_environment, **(environment or {})},
        )
        NagSuppressions.add_resource_suppressions(
            function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Python 3.13 on purpose: the AWS-managed Powertools layer is built per runtime "
                    "(AWSLambdaPowertoolsPythonV3-python313) and the handlers are tested on 3.13.",
                )
            ],
        )
        self.functions.append(function)
        return function

    @property
    def common_environment(self) -> dict[str, str]:
        """What every handler reads at entry into its settings object."""
        return {
            "EC2OPS_ENV": self._config.environment,
            "LEDGER_TABLE": self._ledger.table_name,
            "TOPIC_ARN": self.topic.topic_arn,
            "POWERTOOLS_SERVICE_NAME": c.POWERTOOLS_SERVICE_NAME,
            "POWERTOOLS_LOG_LEVEL": c.POWERTOOLS_LOG_LEVEL,
        }
