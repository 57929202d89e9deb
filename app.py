"""CDK entry: reads the `ec2ops` config from the cdk.json context, builds the stack, checks it with cdk-nag."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import ConfigError, Ec2OpsConfig
from stacks.constants import CONTEXT_KEY
from stacks.ec2ops_stack import Ec2OpsStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def build_app(context: dict[str, Any] | None = None, *, outdir: str | None = None) -> cdk.App:
    """The whole app, built in-process as `cdk synth` builds it.

    The cdk.json context (feature flags and the `ec2ops` config) is the base, so tests get the same app as the CLI;
    `context` overrides it key by key, and its `ec2ops` entries override single config keys.
    """
    base: dict[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    overrides = dict(context or {})
    merged = {**base, **overrides}
    if isinstance(overrides.get(CONTEXT_KEY), dict) and isinstance(base.get(CONTEXT_KEY), dict):
        merged[CONTEXT_KEY] = {**base[CONTEXT_KEY], **overrides[CONTEXT_KEY]}
    app = cdk.App(context=merged, outdir=outdir)
    config = Ec2OpsConfig.from_scope(app)
    Ec2OpsStack(app, config)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app


if __name__ == "__main__":
    try:
        application = build_app()
    except ConfigError as error:
        sys.exit(f"ec2ops: {error}")
    application.synth()
