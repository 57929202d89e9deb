"""Tell the workflow that waits for this instance how the run went: Step Functions task success, failure, heartbeat.

The training-run state machine waits on a task token (env EC2OPS_TASK_TOKEN) with a heartbeat timeout; bootstrap.sh
answers through this script and spot_watcher.py runs `interrupted` on a spot interruption notice. Stdlib and boto3
(imported lazily) only, Python >= 3.10, like the other instance scripts.

`interrupted` is spot_watcher.py's --on-interruption command: it writes the notice (env EC2OPS_SPOT_NOTICE) to
$EC2OPS_INTERRUPTED_MARKER when set (bootstrap.sh's sign that the run was interrupted, not failed), moves the run to
`interrupted` (EC2OPS_BUCKET, EC2OPS_ENV, EC2OPS_RUN_ID), then fails the task with SpotInterrupted, cause = the notice.

Exit codes: 0 sent; 3 the execution no longer waits (TaskTimedOut, InvalidToken, TaskDoesNotExist: it timed out,
was stopped or already answered), one line on stderr; 1 any other error; 64 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GONE = 3
EXIT_USAGE = 64
PROG = "ec2ops_task"

MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32768
MAX_OUTPUT_BYTES = 262144
GONE_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
"""Answers that mean nobody waits for this token any more: retrying cannot help."""

SPOT_ERROR = "SpotInterrupted"
SPOT_STEP = "spot interruption notice"
STATE_RETRIES = 5
STATE_RETRY_SECONDS = 0.5


class UsageError(Exception):
    """Bad arguments or environment: exit 64."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; here 2 is unused and usage is 64 (EX_USAGE), as in ec2ops_run_state."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: usage: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Answer the Step Functions task token in EC2OPS_TASK_TOKEN.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    success = commands.add_parser("success", help="the run finished: send its output")
    output = success.add_mutually_exclusive_group(required=True)
    output.add_argument("--output-file", help="path of a JSON document to send as the task output")
    output.add_argument("--output", help="the JSON document itself")
    failure = commands.add_parser("failure", help="the run failed: send an error name and a cause")
    failure.add_argument("--error", required=True, help=f"error name (at most {MAX_ERROR_CHARS} chars)")
    failure.add_argument("--cause", default="", help=f"what happened (truncated to {MAX_CAUSE_CHARS} chars)")
    commands.add_parser("heartbeat", help="say the instance is alive")
    commands.add_parser(
        "interrupted",
        help="spot interruption (notice in EC2OPS_SPOT_NOTICE): mark the run interrupted, then fail the task "
        f"with {SPOT_ERROR}",
    )
    return parser


def truncate(text: str, limit: int) -> str:
    """Step Functions refuses longer values; keep the start, which says what happened."""
    if len(text) <= limit:
        return text
    marker = "...[truncated]"
    return text[: limit - len(marker)] + marker


def _output_document(args: argparse.Namespace) -> str:
    if args.output_file is not None:
        try:
            text = Path(args.output_file).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read --output-file: {error}") from None
    else:
        text = args.output
    try:
        json.loads(text)
    except ValueError as error:
        raise UsageError(f"the task output is not valid JSON: {error}") from None
    if len(text.encode("utf-8")) > MAX_OUTPUT_BYTES:
        raise UsageError(f"the task output is larger than {MAX_OUTPUT_BYTES} bytes")
    return str(text)


def _error_code(error: Exception) -> str:
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _sfn_client() -> Any:
    import boto3

    return boto3.client("stepfunctions", region_name=os.environ.get("AWS_REGION") or None)


def _run_state() -> Any:
    """ec2ops_run_state.py from this file's directory: the two are shipped to the instance together."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import ec2ops_run_state

    return ec2ops_run_state


def mark_interrupted(environ: Mapping[str, str], s3_client: Any = None) -> str:
    """interrupted in the state file (retried when a heartbeat wrote in between); returns the run's status."""
    rs = _run_state()
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3", region_name=environ.get("AWS_REGION") or None)
    store = rs.RunStateStore(s3_client, environ["EC2OPS_BUCKET"], environ["EC2OPS_ENV"])
    for attempt in range(1, STATE_RETRIES + 1):
        try:
            state = store.transition(environ["EC2OPS_RUN_ID"], "interrupted", step=SPOT_STEP, idempotent=True)
        except rs.ConcurrentUpdate:
            if attempt == STATE_RETRIES:
                raise
            time.sleep(STATE_RETRY_SECONDS)
        else:
            return str(state.status)
    raise AssertionError("unreachable")


def _write_marker(environ: Mapping[str, str], notice: str) -> None:
    """bootstrap.sh checks this file to tell an interruption from a failure; written before anything can fail."""
    marker = environ.get("EC2OPS_INTERRUPTED_MARKER")
    if marker:
        path = Path(marker)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(notice + "\n", encoding="utf-8")


def _interrupted(environ: Mapping[str, str], sfn: Any, token: str, s3_client: Any) -> int:
    missing = [name for name in ("EC2OPS_BUCKET", "EC2OPS_ENV", "EC2OPS_RUN_ID") if not environ.get(name)]
    if missing:
        raise UsageError(f"set {', '.join(missing)} in the environment")
    notice = environ.get("EC2OPS_SPOT_NOTICE") or '{"action": "unknown"}'
    _write_marker(environ, notice)
    code = EXIT_OK
    try:
        mark_interrupted(environ, s3_client)
        print(f"{PROG}: run {environ['EC2OPS_RUN_ID']} marked interrupted", file=sys.stderr)
    except Exception as error:
        # Still fail the task: the workflow must learn of the interruption even if the state file cannot say it.
        print(f"{PROG}: could not mark the run interrupted: {type(error).__name__}: {error}", file=sys.stderr)
        code = EXIT_ERROR
    sent = _send(sfn, token, "failure", error=SPOT_ERROR, cause=notice)
    return sent if sent != EXIT_OK else code


def _send(sfn: Any, token: str, what: str, **fields: str) -> int:
    try:
        if what == "success":
            sfn.send_task_success(taskToken=token, output=fields["output"])
        elif what == "failure":
            sfn.send_task_failure(
                taskToken=token,
                error=truncate(fields["error"], MAX_ERROR_CHARS),
                cause=truncate(fields["cause"], MAX_CAUSE_CHARS),
            )
        else:
            sfn.send_task_heartbeat(taskToken=token)
    except Exception as error:
        code = _error_code(error)
        if code in GONE_CODES:
            print(f"{PROG}: {what} not delivered, the execution no longer waits: {code}", file=sys.stderr)
            return EXIT_GONE
        print(f"{PROG}: {what} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    sfn_client: Any = None,
    s3_client: Any = None,
) -> int:
    """Run one command; see the module docstring for the exit codes."""
    args = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        token = environ.get("EC2OPS_TASK_TOKEN", "")
        if not token:
            raise UsageError("set EC2OPS_TASK_TOKEN in the environment")
        output = _output_document(args) if args.command == "success" else ""
        sfn = sfn_client if sfn_client is not None else _sfn_client()
        if args.command == "interrupted":
            return _interrupted(environ, sfn, token, s3_client)
        if args.command == "success":
            return _send(sfn, token, "success", output=output)
        if args.command == "failure":
            return _send(sfn, token, "failure", error=args.error, cause=args.cause)
        return _send(sfn, token, "heartbeat")
    except UsageError as error:
        print(f"{PROG}: usage: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        print(f"{PROG}: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
