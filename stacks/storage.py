"""Storage: the artifact bucket, its access-log bucket, the ledger table and the opt-in customer KMS key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig


class Storage(Construct):
    """Everything with state lives here, retained on stack deletion; nothing bills by the hour."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Ec2OpsConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.key: kms.Key | None = self._build_key() if config.enable_kms_key else None
        self.log_bucket = self._build_log_bucket()
        self.bucket = self._build_bucket()
        self.ledger = self._build_ledger()

    def _build_key(self) -> kms.Key:
        """A customer key bills monthly, so it exists only when `enable_kms_key` asks for it."""
        return kms.Key(
            self,
            "Key",
            description="ec2ops: artifact bucket and notification topic encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_log_bucket(self) -> s3.Bucket:
        """Target of S3 server access logs and VPC flow logs; SSE-S3 because log delivery cannot use a CMK."""
        bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(self._config.log_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(c.INCOMPLETE_UPLOAD_EXPIRY_DAYS),
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            bucket,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="This is the access-log bucket itself: logging it into itself would loop, and a "
                    "second log bucket would only move the finding.",
                )
            ],
        )
        return bucket

    def _build_bucket(self) -> s3.Bucket:
        """Run state, models and logs of training runs; versioned because the run state lives here."""
        key = self.key
        return s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS if key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=key,
            bucket_key_enabled=True if key else None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix=c.ACCESS_LOG_PREFIX,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=self._bucket_lifecycle(),
        )

    def _bucket_lifecycle(self) -> list[s3.LifecycleRule]:
        """Logs expire and models go cold; S3 prefixes take no wildcard, so `*/logs/`, `*/models/` are tags."""
        return [
            s3.LifecycleRule(
                id="expire-run-logs",
                tag_filters={c.TAG_ARTIFACT: c.ARTIFACT_LOGS},
                expiration=Duration.days(self._config.log_retention_days),
            ),
            s3.LifecycleRule(
                id="models-to-cold-tier",
                tag_filters={c.TAG_ARTIFACT: c.ARTIFACT_MODEL},
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                        transition_after=Duration.days(c.MODEL_COLD_TIER_AFTER_DAYS),
                    )
                ],
            ),
            s3.LifecycleRule(
                id="expire-old-versions",
                noncurrent_version_expiration=Duration.days(c.NONCURRENT_VERSION_EXPIRY_DAYS),
                abort_incomplete_multipart_upload_after=Duration.days(c.INCOMPLETE_UPLOAD_EXPIRY_DAYS),
                expired_object_delete_marker=True,
            ),
        ]

    def _build_ledger(self) -> dynamodb.Table:
        """The audit trail: on-demand (no idle cost), point-in-time recovery, kept when the stack goes."""
        return dynamodb.Table(
            self,
            "Ledger",
            partition_key=dynamodb.Attribute(name=c.LEDGER_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=c.LEDGER_SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=c.LEDGER_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
