"""The real app, synthesized once per test session, deployed fresh into ec2ops.local for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2ops.local import LocalCloud
from ec2ops.local.cloud import REPO_ROOT, quiet_moto_logs


@pytest.fixture(scope="session")
def app_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cdk synth` of the app in-process (app.build_app), into a fresh directory: never a stale cdk.out."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("app") / "cdk.out"
    return Path(build_app(outdir=str(outdir)).synth().directory)


@pytest.fixture
def cloud(app_assembly: Path) -> Iterator[LocalCloud]:
    quiet_moto_logs()
    with LocalCloud(app_assembly, lambda_source=REPO_ROOT / "lambdas") as local:
        yield local
