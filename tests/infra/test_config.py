"""The `ec2ops` context: defaults, and a clear error naming the key for every bad or unknown key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app import build_app
from stacks.config import ConfigError, Ec2OpsConfig

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def test_missing_keys_take_the_documented_defaults() -> None:
    config = Ec2OpsConfig.parse({})
    assert config.environment == "dev"
    assert config.region == "us-east-1"
    assert config.availability_zones == ("us-east-1a", "us-east-1b")
    assert (config.snapshot_poll_seconds, config.snapshot_timeout_minutes) == (15, 60)
    assert (config.snapshot_retain_count, config.snapshot_retain_days) == (7, 30)
    assert config.resize_poll_seconds == 10
    assert (config.resize_stop_timeout_minutes, config.resize_start_timeout_minutes) == (10, 10)
    assert config.resize_status_check_timeout_minutes == 15
    assert config.resize_rollback_attempts == 5
    assert config.log_retention_days == 30
    assert not config.enable_alarms and not config.enable_kms_key
    assert config.stack_name == "ec2ops-dev"


def test_cdk_json_holds_a_valid_config() -> None:
    raw = json.loads(CDK_JSON.read_text())["context"]["ec2ops"]
    config = Ec2OpsConfig.parse(raw)
    assert config.powertools_layer_arn == (
        "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:"
        f"{raw['powertools_layer_version']}"
    )


def test_cdk_json_sets_every_key_explicitly_at_its_default() -> None:
    # What an operator reads in cdk.json is what deploys: no key silently falls back to a default.
    raw = json.loads(CDK_JSON.read_text())["context"]["ec2ops"]
    resize_keys = {key for key in Ec2OpsConfig.model_fields if key.startswith(("resize_", "spot_", "training_"))}
    assert resize_keys <= set(raw)
    defaults = Ec2OpsConfig.parse({})
    assert {key: raw[key] for key in resize_keys} == {key: getattr(defaults, key) for key in resize_keys}


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [
        ("resize_poll_seconds", 1, 300),
        ("resize_stop_timeout_minutes", 1, 60),
        ("resize_start_timeout_minutes", 1, 60),
        ("resize_status_check_timeout_minutes", 1, 60),
        ("resize_rollback_attempts", 1, 20),
        ("spot_bad_pool_minutes", 1, 10080),
        ("spot_launch_deadline_seconds", 10, 840),
        ("spot_poll_seconds", 1, 30),
        ("training_root_volume_gib", 20, 16384),
        ("training_sweep_minutes", 1, 60),
        ("training_stale_after_minutes", 1, 1440),
    ],
)
def test_workflow_keys_accept_their_bounds_and_refuse_beyond(key: str, low: int, high: int) -> None:
    assert getattr(Ec2OpsConfig.parse({key: low}), key) == low
    assert getattr(Ec2OpsConfig.parse({key: high}), key) == high
    for bad, says in ((low - 1, f"greater than or equal to {low}"), (high + 1, f"less than or equal to {high}")):
        with pytest.raises(ConfigError) as refused:
            Ec2OpsConfig.parse({key: bad})
        assert f"key '{key}': " in str(refused.value) and says in str(refused.value)
        assert f"(got {bad})" in str(refused.value)


def test_the_config_is_frozen() -> None:
    config = Ec2OpsConfig.parse({})
    with pytest.raises(ValueError, match="frozen"):
        config.environment = "prod"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"snapshot_retian_count": 3}, "snapshot_retian_count", "unknown key"),
        ({"environment": "Prod"}, "environment", "pattern"),
        ({"environment": "a-name-far-too-long-for-us"}, "environment", "pattern"),
        ({"availability_zones": ["us-east-1a", "us-west-2a"]}, "availability_zones", "us-west-2a"),
        ({"region": "eu-west-1"}, "availability_zones", "eu-west-1"),
        ({"availability_zones": []}, "availability_zones", "1 to 6"),
        ({"availability_zones": ["us-east-1a", "us-east-1a"]}, "availability_zones", "twice"),
        ({"snapshot_retain_count": 0}, "snapshot_retain_count", "greater than or equal to 1"),
        ({"snapshot_retain_days": 3651}, "snapshot_retain_days", "less than or equal to 3650"),
        ({"snapshot_poll_seconds": "15"}, "snapshot_poll_seconds", "integer"),
        ({"snapshot_timeout_minutes": 0}, "snapshot_timeout_minutes", "greater than or equal to 1"),
        ({"log_retention_days": 31}, "log_retention_days", "not a CloudWatch Logs retention period"),
        ({"powertools_layer_version": 0}, "powertools_layer_version", "greater than or equal to 1"),
        ({"enable_alarms": "yes"}, "enable_alarms", "boolean"),
        ({"resize_poll_seconds": 0}, "resize_poll_seconds", "greater than or equal to 1"),
        ({"resize_poll_seconds": "10"}, "resize_poll_seconds", "integer"),
        ({"resize_stop_timeout_minutes": 61}, "resize_stop_timeout_minutes", "less than or equal to 60"),
        ({"resize_start_timeout_minutes": 0}, "resize_start_timeout_minutes", "greater than or equal to 1"),
        ({"resize_status_check_timeout_minutes": 15.5}, "resize_status_check_timeout_minutes", "integer"),
        ({"resize_rollback_attempts": 21}, "resize_rollback_attempts", "less than or equal to 20"),
        ({"resize_rollback_attempts": True}, "resize_rollback_attempts", "integer"),
        ({"resize_poll_second": 10}, "resize_poll_second", "unknown key"),
    ],
    ids=[
        "unknown-key",
        "environment-uppercase",
        "environment-too-long",
        "az-outside-region",
        "region-without-its-azs",
        "no-az",
        "az-twice",
        "retain-count-zero",
        "retain-days-too-many",
        "poll-as-string",
        "timeout-zero",
        "log-retention-not-allowed",
        "layer-version-zero",
        "alarms-not-boolean",
        "resize-poll-zero",
        "resize-poll-as-string",
        "resize-stop-timeout-too-long",
        "resize-start-timeout-zero",
        "resize-status-check-timeout-fraction",
        "resize-rollback-attempts-too-many",
        "resize-rollback-attempts-boolean",
        "resize-typo",
    ],
)
def test_a_bad_key_is_refused_with_an_error_naming_it(raw: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Ec2OpsConfig.parse(raw)
    message = str(refused.value)
    assert f"'{key}'" in message
    assert says in message
    assert "'ec2ops'" in message  # where to look: the cdk.json context key


def test_a_context_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be an object"):
        Ec2OpsConfig.parse(["dev"])


def test_the_app_refuses_a_bad_context_before_building_anything() -> None:
    # Given an override with a typo, When the app is built, Then it fails naming the key (no synth needed)
    with pytest.raises(ConfigError, match="'enable_alarm'"):
        build_app({"ec2ops": {"enable_alarm": True}})


def test_the_heartbeat_timeout_must_leave_room_for_a_late_heartbeat() -> None:
    assert Ec2OpsConfig.parse({"training_heartbeat_seconds": 60, "training_heartbeat_timeout_seconds": 120})
    with pytest.raises(ConfigError) as refused:
        Ec2OpsConfig.parse({"training_heartbeat_seconds": 60, "training_heartbeat_timeout_seconds": 90})
    assert "key 'training_heartbeat_timeout_seconds': must be at least twice" in str(refused.value)


def test_the_training_ami_parameter_must_be_an_ssm_path() -> None:
    with pytest.raises(ConfigError) as refused:
        Ec2OpsConfig.parse({"training_ami_parameter": "ami-0123456789abcdef0"})
    assert "training_ami_parameter" in str(refused.value)
