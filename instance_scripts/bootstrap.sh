#!/bin/bash
# ec2ops training instance user data; the Lambda puts the run's settings (base64 JSON) in the quotes below.
EC2OPS_SETTINGS_B64=''
set -Eeuo pipefail
umask 077
export EC2OPS_ROOT="${EC2OPS_ROOT:-/opt/ec2ops}"
ROOT="$EC2OPS_ROOT" IMDS="${EC2OPS_IMDS_ENDPOINT:-http://169.254.169.254}"
LOG_FILE="$ROOT/bootstrap.log" S="$ROOT/scripts/ec2ops" WORK="$ROOT/work" MARKER="$ROOT/spot-interrupted"
PHASE="system setup" FAIL_NAME=BootstrapFailed FAIL_REASON="" LAST_ERR=""
PY="" JOB_PY="" JOB_BIN="$ROOT/bin" INSTANCE_ID="" HB_PID="" WATCH_PID="" WRAP_PID="" REPORTED=0

# python3: settings (data, never shell code) to settings.json and ids.env (shlex-quoted ids); S3, EC2 calls
read -r -d '' HELPER <<'PY' || true
import base64, json, os, re, shlex, shutil, sys, tarfile, tempfile
from pathlib import Path
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "settings":
    try: s = json.loads(base64.b64decode(sys.stdin.read().strip(), validate=True) or b"null")
    except ValueError as e: sys.exit(f"bad settings: not base64 JSON: {e}")
    if not isinstance(s, dict): sys.exit("bad settings: no JSON object (user data not rendered?)")
    spec = {"run_id": "[a-z0-9-]{1,64}", "env": "[a-z][a-z0-9-]{0,31}", "market": "spot|on-demand"}
    spec |= dict.fromkeys(["bucket", "region", "instance_type", "task_token", "scripts_prefix"], ".+")
    spec |= dict.fromkeys(["attempt", "heartbeat_seconds", "log_upload_seconds"], 1)
    bad = [k for k, rx in spec.items() if not (re.fullmatch(rx, s[k]) if isinstance(s.get(k), str) and rx != 1
           else type(s.get(k)) is int and rx == 1 and s[k] >= 1)]
    if bad: sys.exit(f"bad settings: missing or invalid {', '.join(bad)}")
    fd = os.open(Path(args[0], "settings.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f: json.dump(s, f)
    names = "run_id env bucket instance_type market attempt task_token heartbeat_seconds log_upload_seconds".split()
    ids = {"EC2OPS_" + k.upper(): s[k] for k in names} | {"AWS_REGION": s["region"], "AWS_DEFAULT_REGION": s["region"],
           "EC2OPS_S3_PREFIX": f"{s['env']}/{s['run_id']}", "EC2OPS_RESUME": int(s.get("resume") is True),
           "EC2OPS_HAS_VENV": int(bool(s.get("python_env"))), "EC2OPS_HAS_DATA": int(bool(s.get("data_prefix")))}
    Path(args[0], "ids.env").write_text("".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in ids.items()))
    sys.exit()
import boto3
if cmd == "terminate": boto3.client("ec2").terminate_instances(InstanceIds=args); sys.exit()
s3, bucket, prefix = boto3.client("s3"), os.environ["EC2OPS_BUCKET"], os.environ["EC2OPS_S3_PREFIX"]
settings = json.loads(Path(os.environ["EC2OPS_ROOT"], "settings.json").read_text())
def sync(src, dest, skip=None):
    src, n = src.rstrip("/"), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src):
        for k in (o["Key"] for o in page.get("Contents", [])):
            rel = Path(k).name if k == src else k[len(src) + 1:] if k.startswith(src + "/") else ""
            if not rel or k.endswith("/") or skip and rel.startswith(skip) or ".." in Path(rel).parts: continue
            Path(dest, rel).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, k, str(Path(dest, rel))); n += 1
    print(f"{n} file(s) from s3://{bucket}/{src} to {dest}", file=sys.stderr)
    return n
if cmd == "scripts":
    base = settings["scripts_prefix"].rstrip("/"); sync(base + "/ec2ops", args[0]); sync(base, args[1], skip="ec2ops/")
elif cmd == "venv":
    key, dest = "cached-datasets/python-env/" + settings["python_env"], Path(args[0])
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=s3.get_object(Bucket=bucket, Key=key)["Body"], mode="r|gz") as tar:
        tar.extractall(tmp, filter="tar") if hasattr(tarfile, "tar_filter") else tar.extractall(tmp)
        top = next(Path(tmp).glob("*/bin/python"), Path(tmp, "bin/python")).parent.parent  # one top folder or none
        shutil.move(str(top), str(dest)) if top != Path(tmp) else shutil.copytree(tmp, dest, symlinks=True)
    if not (dest / "bin/python").exists(): sys.exit(f"{key}: no working bin/python (base Python missing?)")
elif cmd == "data":
    src = "cached-datasets/training-data/" + settings["data_prefix"]
    if not sync(src, args[0]): sys.exit(f"no training data at s3://{bucket}/{src}")
elif cmd == "checkpoints": sync(prefix + "/checkpoints", args[0])
elif cmd == "put":
    for path, key in zip(args[::2], args[1::2]):
        if Path(path).is_file(): s3.upload_file(path, bucket, f"{prefix}/{key}")
elif cmd == "results":  # the wrapper uploaded training.json and models/: add what is missing, then the task output
    work = Path(args[0])
    for p in [work / "training.json", *(x for x in work.glob("models/**/*") if x.is_file())]:
        key = f"{prefix}/{p.relative_to(work).as_posix()}"
        try: s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError: s3.upload_file(str(p), bucket, key)
    Path(args[2]).write_text(json.dumps({"run_id": settings["run_id"], "instance_id": args[1], "attempt": settings["attempt"],
                                         "training_json": f"{prefix}/training.json", "exit_code": 0}))
PY

log() { printf '%s bootstrap [%s] %s\n' "$(date -u +%FT%TZ)" "$PHASE" "$*" | tee -a "$LOG_FILE" >&2; }
py() {  # stderr to the log; its last line is the failure's reason
  local rc=0 err="$ROOT/.stderr.$BASHPID"
  LAST_ERR=""
  "$PY" "$@" 2>"$err" || rc=$?
  tee -a "$LOG_FILE" <"$err" >&2
  [ "$rc" -eq 0 ] || LAST_ERR="$(tail -n 1 "$err")"
  rm -f "$err"
  return "$rc"
}
helper() { py -c "$HELPER" "$@"; }
state() {  # retried when a heartbeat wrote in between (compare-and-swap)
  local try
  for try in 1 2 3 4 5; do
    py "$S/ec2ops_run_state.py" "$@" && return 0
    [[ "$LAST_ERR" == *ConcurrentUpdate* ]] || return 1
    sleep "$try"
  done
  return 1
}
task() {  # never fatal; exit 3: the execution no longer waits, 1: retried once
  local rc=0
  py "$S/ec2ops_task.py" "$@" || rc=$?
  [ "$rc" -ne 1 ] || { sleep 2; rc=0; py "$S/ec2ops_task.py" "$@" || rc=$?; }
  [ "$rc" -eq 0 ] || log "ec2ops_task.py $1 not delivered (exit $rc): $LAST_ERR"
  LAST_ERR=""
}
imds() {  # IMDSv2: a session token, then GET meta-data/$1
  local c=(curl -sf --retry 3 --retry-connrefused --max-time 5) t
  t="$("${c[@]}" -X PUT "$IMDS/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")" &&
    "${c[@]}" -H "X-aws-ec2-metadata-token: $t" "$IMDS/latest/meta-data/$1"
}
phase() { PHASE="$1" FAIL_NAME="${2:-BootstrapFailed}"; }
fail() { FAIL_REASON="$1"; exit 1; }
on_err() { local rc=$?; [ -n "$FAIL_REASON" ] || FAIL_REASON="${LAST_ERR:-"'$BASH_COMMAND' exited with code $rc"}"; }
on_signal() { FAIL_REASON="bootstrap received $1"; exit "$2"; }

heartbeats() {  # a dead instance shows as a missed heartbeat
  set +eE
  trap 'kill $! 2>/dev/null; exit 0' TERM  # $!: the sleep
  while :; do
    "$PY" "$S/ec2ops_task.py" heartbeat >>"$LOG_FILE" 2>&1
    "$PY" "$S/ec2ops_run_state.py" heartbeat >>"$LOG_FILE" 2>&1
    sleep "$EC2OPS_HEARTBEAT_SECONDS" &
    wait $!
  done
}
stop_watcher() {  # a notice in hand is handled first
  [ -n "$WATCH_PID" ] || return 0
  kill -TERM "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" || true
  WATCH_PID=""
}
cleanup() {
  local rc=$? msg notice
  trap - EXIT ERR INT
  trap '' TERM  # the instance may be going already: finish what can be
  set +eE
  [ -z "$HB_PID" ] || kill -TERM "$HB_PID" 2>/dev/null
  # reclaimed before the watcher acted: an interruption, not a failure
  if [ "$rc" -ne 0 ] && [ "${EC2OPS_MARKET:-}" = spot ] && [ ! -e "$MARKER" ] && notice="$(imds spot/instance-action)"
  then
    log "spot interruption at exit: $notice"
    EC2OPS_SPOT_NOTICE="$notice" EC2OPS_INTERRUPTED_MARKER="$MARKER" py "$S/ec2ops_task.py" interrupted
  fi
  if [ -n "$WRAP_PID" ]; then kill -TERM "$WRAP_PID" 2>/dev/null; wait "$WRAP_PID"; fi  # it syncs checkpoints
  stop_watcher
  if [ "$rc" -eq 0 ] || [ "$REPORTED" = 1 ]; then
    log "done (exit $rc)"
  elif [ -e "$MARKER" ]; then
    log "exit $rc after a spot interruption"
  else
    msg="$PHASE failed: ${FAIL_REASON:-exit code $rc}"
    log "$FAIL_NAME: $msg"
    [ ! -f "$S/ec2ops_task.py" ] || {
      state transition failed --step "failed in $PHASE" --error "$msg" --idempotent || log "run not marked failed"
      task failure --error "$FAIL_NAME" --cause "$msg"
    }
  fi
  log "upload log, shutdown -h now, terminate ${INSTANCE_ID:-?} (backstop)"
  [ -z "${EC2OPS_S3_PREFIX:-}" ] || helper put "$LOG_FILE" logs/bootstrap.log || log "log upload failed"
  if command -v shutdown >/dev/null; then shutdown -h now || log "shutdown failed"; fi
  [ -z "$INSTANCE_ID" ] || helper terminate "$INSTANCE_ID" || log "TerminateInstances failed"
  exit "$rc"
}

phase_system_setup() {
  mkdir -p "$JOB_BIN" "$S" "$WORK/.ec2ops"
  PY="$(command -v python3)" || fail "no python3 on PATH"
  INSTANCE_ID="$(imds instance-id)" || fail "no instance id from IMDSv2 at $IMDS"
  AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$(imds placement/region || :)}"
  export AWS_DEFAULT_REGION  # for the terminate backstop, even without settings
  helper settings "$ROOT" <<<"$EC2OPS_SETTINGS_B64"
  # shellcheck source=/dev/null
  source "$ROOT/ids.env"
  command -v python >/dev/null || ln -sf "$PY" "$JOB_BIN/python"  # for a command that says `python`
  log "$INSTANCE_ID: run $EC2OPS_RUN_ID attempt $EC2OPS_ATTEMPT ($EC2OPS_MARKET)"
}
phase_scripts() {
  phase scripts
  helper scripts "$S" "$WORK"
  for f in ec2ops_run_state ec2ops_task preflight_check training_wrapper spot_watcher; do
    [ -f "$S/$f.py" ] || fail "no $f.py in the scripts"
  done
  state step "scripts downloaded"
  heartbeats &
  HB_PID=$!
}
phase_venv() {
  phase venv
  JOB_PY="$PY"
  if [ "$EC2OPS_HAS_VENV" = 1 ]; then
    helper venv "$ROOT/venv"
    JOB_PY="$ROOT/venv/bin/python" JOB_BIN="$ROOT/venv/bin"
  fi
}
phase_preflight() {
  phase preflight PreflightFailed
  state step "preflight"
  local rc=0 first
  "$PY" "$S/preflight_check.py" --instance-type "$EC2OPS_INSTANCE_TYPE" --python "$JOB_PY" --path "$ROOT" \
    --report "$ROOT/preflight.json" >>"$LOG_FILE" 2>"$ROOT/preflight.err" || rc=$?
  tee -a "$LOG_FILE" <"$ROOT/preflight.err" >&2
  helper put "$ROOT/preflight.json" preflight.json || log "preflight report not uploaded"
  first="$(head -n 1 "$ROOT/preflight.err")"
  [ "$rc" -eq 0 ] || fail "${first#preflight failed: }"
}
phase_data_sync() {
  phase "data sync"
  state transition data_sync --step "data sync"
  [ "$EC2OPS_HAS_DATA" = 0 ] || helper data "$WORK/data"
  if [ "$EC2OPS_RESUME" = 1 ]; then helper checkpoints "$WORK/checkpoints"; fi
}
phase_training() {
  phase training TrainingFailed
  if [ "$EC2OPS_MARKET" = spot ]; then
    EC2OPS_INTERRUPTED_MARKER="$MARKER" "$PY" "$S/spot_watcher.py" --workdir "$WORK" --imds "$IMDS" \
      --marker "$MARKER" --on-interruption "$(printf '%q ' "$PY" "$S/ec2ops_task.py") interrupted" \
      >>"$LOG_FILE" 2>&1 &
    WATCH_PID=$!
  fi
  state transition training
  local rc=0
  PATH="$JOB_BIN:$PATH" "$PY" "$S/training_wrapper.py" --settings "$ROOT/settings.json" --workdir "$WORK" \
    --bucket "$EC2OPS_BUCKET" --s3-prefix "$EC2OPS_S3_PREFIX" \
    --heartbeat-command "$(printf '%q ' "$PY" "$S/ec2ops_run_state.py") heartbeat" >/dev/null 2>>"$LOG_FILE" &
  WRAP_PID=$!
  wait "$WRAP_PID" || rc=$?
  WRAP_PID=""
  stop_watcher
  if [ -e "$MARKER" ]; then
    log "spot interruption (training exit $rc): the run stays interrupted"
    exit 0
  fi
  [ "$rc" -eq 0 ] || fail "training command exited with code $rc"
}
phase_results_sync() {
  phase "results sync"
  state transition results_sync --step "results sync"
  helper results "$WORK" "$INSTANCE_ID" "$ROOT/task-output.json"
  phase report
  REPORTED=1  # from now on the workflow may terminate this instance: no failure
  task success --output-file "$ROOT/task-output.json"
}

trap on_err ERR
trap cleanup EXIT
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGINT 130' INT
mkdir -p "$ROOT"
log "starting in $ROOT"
phase_system_setup
phase_scripts
phase_venv
phase_preflight
phase_data_sync
phase_training
phase_results_sync
