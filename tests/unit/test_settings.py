"""Each function's settings: defaults, the 'no limit' spelling, and a clear error naming a bad variable."""

from __future__ import annotations

import pytest
from ec2ops_lambda.errors import ConfigurationError
from ec2ops_lambda.settings import PlanSettings, RecordFailureSettings, RecordSettings, load


def test_plan_settings_default_to_the_documented_retention_and_timeout() -> None:
    settings = load(PlanSettings, {})
    assert (settings.retain_count, settings.retain_days, settings.timeout_minutes) == (7, 30, 60)
    assert settings.env == "dev"


def test_plan_settings_read_the_stacks_variables() -> None:
    settings = load(
        PlanSettings,
        {
            "EC2OPS_ENV": "prod",
            "SNAPSHOT_RETAIN_COUNT": "3",
            "SNAPSHOT_RETAIN_DAYS": "none",
            "SNAPSHOT_TIMEOUT_MINUTES": "15",
            "LEDGER_TABLE": "ignored-here",
        },
    )
    assert (settings.env, settings.retain_count, settings.retain_days, settings.timeout_minutes) == (
        "prod",
        3,
        None,
        15,
    )


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"SNAPSHOT_RETAIN_COUNT": "seven"}, "SNAPSHOT_RETAIN_COUNT: must be a whole number (got 'seven')"),
        ({"SNAPSHOT_RETAIN_DAYS": "0"}, "SNAPSHOT_RETAIN_DAYS: must be at least 1"),
        ({"SNAPSHOT_TIMEOUT_MINUTES": "0"}, "SNAPSHOT_TIMEOUT_MINUTES: must be at least 1"),
    ],
)
def test_a_bad_variable_is_named_with_what_to_do(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load(PlanSettings, environ)
    assert says in str(refused.value)
    assert "redeploy" in str(refused.value)


def test_record_needs_the_ledger_table() -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_TABLE: is required"):
        load(RecordSettings, {})
    assert load(RecordSettings, {"LEDGER_TABLE": "ledger"}).ledger_table == "ledger"


def test_record_failure_runs_without_ledger_or_topic_so_cleanup_is_never_skipped() -> None:
    settings = load(RecordFailureSettings, {})
    assert (settings.ledger_table, settings.topic_arn) == (None, None)
