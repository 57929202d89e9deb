"""A probe app synthesized once per session, and a LocalCloud running it for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2ops.local import LocalCloud
from ec2ops.local.cloud import quiet_moto_logs
from tests.local.probe_app import FUNCTIONS, build

LOCAL_EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "aws-events"


@pytest.fixture(scope="session")
def probe_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("probe") / "cdk.out")


@pytest.fixture
def cloud(probe_assembly: Path) -> Iterator[LocalCloud]:
    quiet_moto_logs()
    with LocalCloud(probe_assembly, lambda_source=FUNCTIONS) as local:
        yield local
