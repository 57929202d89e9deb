"""The training run's input checks and its user data: bootstrap.sh with the settings, shell-safe."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.training import MAX_CONFIG_BYTES, parse_request
from ec2ops_lambda.training import user_data

GOOD = {
    "env": "dev",
    "instance_type": "g4dn.2xlarge",
    "market": "spot",
    "max_runtime_hours": 6,
    "command": ["python", "train.py", "--epochs", "3"],
    "training_config": {"prediction_length": 64, "context_length": 512},
}


def test_the_documented_input_is_valid() -> None:
    request = parse_request(GOOD)
    assert (request.env, request.market, request.max_resumes, request.python_env) == ("dev", "spot", 2, None)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"env": "Dev!"}, "env"),
        ({"env": "a" * 33}, "env"),
        ({"instance_type": "g4dn"}, "instance_type"),
        ({"max_runtime_hours": 0}, "max_runtime_hours"),
        ({"max_runtime_hours": 73}, "max_runtime_hours"),
        ({"command": []}, "command"),
        ({"command": ["python", ""]}, "command"),
        ({"training_config": {"blob": "x" * MAX_CONFIG_BYTES}}, "training_config"),
        ({"data_prefix": "../secrets"}, "data_prefix"),
        ({"python_env": "venv.zip"}, "python_env"),
        ({"market": "reserved"}, "market"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_input_names_the_field(change: dict[str, Any], names: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_request(GOOD | change)
    assert names in str(refused.value)
    assert "Nothing was launched" in str(refused.value)


def test_user_data_carries_the_settings_as_base64_only() -> None:
    nasty = {"q": 'it\'s "x"', "s": "$(reboot)", "b": "`id`", "n": "a\nb"}
    rendered = user_data.render({"run_id": "r1", "training_config": nasty})
    (line,) = [line for line in rendered.splitlines() if line.startswith("EC2OPS_SETTINGS_B64=")]
    encoded = line.split("'")[1]
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    assert user_data.settings_of(rendered)["training_config"] == nasty
    assert base64.b64decode(encoded)
    for value in nasty.values():
        assert value not in rendered
    assert rendered.startswith("#!/bin/bash")


def test_user_data_over_the_ec2_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="over EC2's 16384"):
        user_data.render({"training_config": {"blob": "x" * 16000}})


def test_the_instance_scripts_ship_in_the_lambda_package() -> None:
    for name in (*user_data.INSTANCE_SCRIPTS, "bootstrap.sh"):
        assert user_data.instance_script(name)
