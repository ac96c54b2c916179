# shellcheck shell=bash disable=SC2034  # settings here are used by deploy/local/stack
# Helpers for deploy/local/stack. Sourced, never run on its own.
#
# Everything here is about owning processes safely: a service counts as
# running only when its pid file names a live process whose command line
# carries this runtime dir's signature, so a stale pid file (after a reboot
# the pid may belong to anything) is never mistaken for our service, and
# `down` never signals a process it did not start.

# ---------------------------------------------------------------- locations --

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$STACK_DIR/../.." && pwd)"

# Absolute paths matter: the runtime dir is part of every process signature.
RUNTIME_DIR="${REKAP_RUNTIME_DIR:-$REPO_ROOT/.rekap}"
[[ "$RUNTIME_DIR" = /* ]] || RUNTIME_DIR="$PWD/$RUNTIME_DIR"
PID_DIR="$RUNTIME_DIR/pids"
LOG_DIR="$RUNTIME_DIR/logs"
DATA_DIR="$RUNTIME_DIR/data"
CONF_DIR="$RUNTIME_DIR/conf"

KAFKA_POM="$STACK_DIR/kafka/pom.xml"
KAFKA_LOG4J2="$STACK_DIR/kafka/log4j2.properties"
# The POM is the single source of truth for the broker version.
KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$KAFKA_POM")"
CACHE_DIR="${REKAP_CACHE_DIR:-${HOME:?HOME is not set}/.cache/rekap}"
KAFKA_HOME_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME_DIR/libs"
# Pinned so a fetch is reproducible; Maven's implicit default (2.8) is from 2013.
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

PROMETHEUS_CONFIG="${REKAP_PROMETHEUS_CONFIG:-$REPO_ROOT/deploy/prometheus/prometheus.yml}"

# Non-default ports, so the stack never collides with a system Kafka/Redis/Prometheus.
KAFKA_PORT="${REKAP_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${REKAP_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${REKAP_REDIS_PORT:-16379}"
PROMETHEUS_PORT="${REKAP_PROMETHEUS_PORT:-19090}"
REDIS_PASSWORD="${REKAP_REDIS_PASSWORD:-}"

# Seconds. Kafka's first start formats storage and elects itself; 2 slow cores need headroom.
KAFKA_START_TIMEOUT="${REKAP_KAFKA_START_TIMEOUT:-120}"
START_TIMEOUT="${REKAP_START_TIMEOUT:-30}"
STOP_TIMEOUT="${REKAP_STOP_TIMEOUT:-30}"

# The repo venv has kafka-python; it lets the Kafka health check be a real metadata request.
if [[ -n "${REKAP_PYTHON:-}" ]]; then
  PYTHON="$REKAP_PYTHON"
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
  PYTHON="$REPO_ROOT/.venv/bin/python"
else
  PYTHON="python3"
fi

# ------------------------------------------------------------------ output --

info() { printf '%s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() {
  printf 'stack: error: %s\n' "$*" >&2
  exit 1
}

# Print the end of a log so a failed start explains itself without a second command.
log_tail() {
  local file="$1" lines="${2:-40}"
  if [[ -s "$file" ]]; then
    printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '--- end of %s ---\n' "$file" >&2
  else
    printf 'stack: (log %s is empty or missing)\n' "$file" >&2
  fi
}

need_cmd() {
  local cmd="$1" hint="$2"
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found on PATH. $hint"
}

# Kafka 4.x brokers refuse to run on Java < 17; say so before a cryptic class-version error.
need_java17() {
  need_cmd java "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)."
  local line major
  line="$(java -version 2>&1 | head -n 1)"
  major="$(sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' <<<"$line")"
  [[ -n "$major" ]] || die "cannot read the Java version from: $line"
  ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17+, found: $line"
}

# -------------------------------------------------------- process ownership --

pid_file() { printf '%s/%s.pid\n' "$PID_DIR" "$1"; }

# A string that appears in the command line of our process and of no other:
# each one names a file or dir inside this runtime dir.
signature() {
  case "$1" in
    kafka) printf '%s\n' "$CONF_DIR/kafka/server.properties" ;;
    redis) printf '%s\n' "$CONF_DIR/redis/redis.conf" ;;
    prometheus) printf '%s\n' "--storage.tsdb.path=$DATA_DIR/prometheus" ;;
    *) die "unknown service: $1" ;;
  esac
}

program_marker() {
  case "$1" in
    kafka) printf 'kafka.Kafka\n' ;;
    redis) printf 'redis-server\n' ;;
    prometheus) printf 'prometheus\n' ;;
    *) die "unknown service: $1" ;;
  esac
}

cmdline_of() {
  # NUL-separated argv; Redis rewrites it into one space-separated title.
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# Succeeds (and prints the pid) when the service's pid file names a live
# process whose command line matches both the program and this runtime dir.
svc_pid() {
  local name="$1" file pid cmd
  file="$(pid_file "$name")"
  [[ -f "$file" ]] || return 1
  pid="$(<"$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(cmdline_of "$pid")"
  [[ "$cmd" == *"$(program_marker "$name")"* && "$cmd" == *"$(signature "$name")"* ]] || return 1
  printf '%s\n' "$pid"
}

# A pid file that does not name our live process is stale: drop it.
clear_stale_pid() {
  local name="$1" file
  file="$(pid_file "$name")"
  if [[ -f "$file" ]] && ! svc_pid "$name" >/dev/null; then
    warn "$name: removing stale pid file $file (pid $(<"$file") is not this stack's $name)"
    rm -f "$file"
  fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -H -ltnp "sport = :$1" 2>/dev/null | head -n 3
  fi
}

need_free_port() {
  local name="$1" port="$2" owner
  if port_in_use "$port"; then
    owner="$(port_owner "$port")"
    die "$name: port 127.0.0.1:$port is already taken by another process${owner:+:
$owner}
Stop it, or choose another port (REKAP_*_PORT)."
  fi
}

# Start a command in its own session (so a Ctrl-C in the caller's terminal
# does not reach it, and `down` can signal its whole process group), detached
# from our stdio and from the lock fd 9. The child writes its own pid before
# exec, so the pid file is exact even if setsid has to fork.
launch() {
  local name="$1" log="$2"
  shift 2
  local file
  file="$(pid_file "$name")"
  rm -f "$file"
  # shellcheck disable=SC2016  # $$ and $1 must expand in the child shell.
  setsid bash -c 'echo "$$" >"$1.tmp" && mv -f "$1.tmp" "$1" && shift && exec "$@"' \
    launch "$file" "$@" </dev/null >>"$log" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$file" ]] && return 0
    sleep 0.1
  done
  die "$name: the launcher did not write $file"
}

# Poll CHECK until it succeeds; fail fast with the log tail if the process
# dies, or after TIMEOUT seconds.
wait_healthy() {
  local name="$1" timeout="$2" log="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if ! svc_pid "$name" >/dev/null; then
      log_tail "$log"
      die "$name: the process exited during start-up (log: $log)"
    fi
    if ((SECONDS >= deadline)); then
      log_tail "$log"
      die "$name: not healthy after ${timeout}s (log: $log); it is still running, 'stack down' stops it"
    fi
    sleep 0.5
  done
}

pgid_of() {
  # Field 5 of /proc/PID/stat, after the parenthesised command name.
  local stat pgid
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  read -r _ _ pgid _ <<<"$stat"
  printf '%s\n' "$pgid"
}

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL the service's process group
# (Redis may have a fork for AOF rewrite). Only ever touches a pid that
# svc_pid vouched for.
stop_svc() {
  local name="$1" pid pgid="" deadline
  clear_stale_pid "$name"
  if ! pid="$(svc_pid "$name")"; then
    info "$(printf '%-11s' "$name")not running"
    return 0
  fi
  # launch() makes each service a process-group leader; only then is the group ours.
  if [[ "$(pgid_of "$pid" || true)" == "$pid" ]]; then
    pgid="$pid"
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    if [[ -n "$pgid" ]]; then
      kill -KILL -- "-$pgid" 2>/dev/null || true
    else
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Leftover group members (e.g. a forked child) go too.
  if [[ -n "$pgid" ]] && kill -0 -- "-$pgid" 2>/dev/null; then
    sleep 0.5
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$(pid_file "$name")"
  info "$(printf '%-11s' "$name")stopped (pid $pid)"
}

# ------------------------------------------------------------------ health --

kafka_python_ok() {
  "$PYTHON" -c 'import kafka' >/dev/null 2>&1
}

# A real metadata request: succeeds only once the broker is registered and
# unfenced (it then lists itself).
kafka_metadata_ok() {
  timeout 20 "$PYTHON" - "127.0.0.1:$KAFKA_PORT" <<'PY'
import sys
from kafka import KafkaAdminClient
conf = {"bootstrap_servers": sys.argv[1], "request_timeout_ms": 5000,
        "client_id": "rekap-stack-health"}
# kafka-python 3 waits 30 s to bootstrap by default; 2.x has no such option.
if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
    conf["bootstrap_timeout_ms"] = 5000
admin = KafkaAdminClient(**conf)
try:
    brokers = admin.describe_cluster()["brokers"]
finally:
    admin.close()
sys.exit(0 if brokers else 1)
PY
}

kafka_started_logged() {
  grep -q 'Kafka Server started' "$LOG_DIR/kafka/server.log" 2>/dev/null
}

kafka_healthy() {
  # The cheap port check first: a client bootstrapping against a closed port waits seconds.
  port_in_use "$KAFKA_PORT" || return 1
  if kafka_python_ok; then
    kafka_metadata_ok
  else
    # Fallback without kafka-python: port open and the broker said it started.
    port_in_use "$KAFKA_PORT" && kafka_started_logged
  fi
}

redis_healthy() {
  local reply
  local -a auth=()
  # An empty REDISCLI_AUTH would still send AUTH, which a password-less Redis refuses.
  [[ -n "$REDIS_PASSWORD" ]] && auth=(env "REDISCLI_AUTH=$REDIS_PASSWORD")
  # timeout: a hung (e.g. SIGSTOPped) server must not hang status or up.
  reply="$("${auth[@]}" timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1)" || return 1
  [[ "$reply" == PONG ]]
}

# A plain HTTP/1.0 GET through bash's /dev/tcp: no curl or wget needed.
http_ok() {
  local port="$1" path="$2" status=""
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$path" "$port" >&3
    IFS= read -r -t 5 status <&3 || exit 1
    [[ "$status" == "HTTP/"*" 200"* ]]
  ) 2>/dev/null
}

prometheus_healthy() {
  http_ok "$PROMETHEUS_PORT" /-/ready
}
