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
SENTINEL_SERVICE="${REKAP_REDIS_SENTINEL_SERVICE:-rekap}"

# The topology `up` last started; `up` without topology flags resumes it.
TOPOLOGY_FILE="$RUNTIME_DIR/topology"
# The topology this command works on (topology_use sets it, and the lists below).
REDIS_MODE=single # single | cluster | sentinel
KAFKA_BROKERS=1   # 1 | 3
KAFKA_SVCS=()     # kafka, or kafka-1 kafka-2 kafka-3
REDIS_SVCS=()     # redis, or redis-<port> per data node
SENTINEL_SVCS=()  # sentinel-<port> (sentinel mode only)

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

# ---------------------------------------------------------------- topology --
#
# Every port derives from the base ports, so a private stack needs one small range:
#   kafka-k (k=1..3)     KAFKA_PORT+10*(k-1), controller KAFKA_CONTROLLER_PORT+10*(k-1)
#   cluster node i       REDIS_PORT+i (i=0..5), its cluster bus REDIS_PORT+10+i
#   sentinel mode        data nodes REDIS_PORT+0..2, sentinels REDIS_PORT+10..12

redis_mode_valid() { [[ "$1" == single || "$1" == cluster || "$1" == sentinel ]]; }
kafka_brokers_valid() { [[ "$1" == 1 || "$1" == 3 ]]; }

# Sets REDIS_MODE, KAFKA_BROKERS and the service lists.
topology_use() {
  local mode="$1" brokers="$2" i
  REDIS_MODE="$mode" KAFKA_BROKERS="$brokers"
  KAFKA_SVCS=() REDIS_SVCS=() SENTINEL_SVCS=()
  if ((brokers == 1)); then
    KAFKA_SVCS=(kafka)
  else
    for ((i = 1; i <= brokers; i++)); do KAFKA_SVCS+=("kafka-$i"); done
  fi
  case "$mode" in
    single) REDIS_SVCS=(redis) ;;
    cluster) for ((i = 0; i < 6; i++)); do REDIS_SVCS+=("redis-$((REDIS_PORT + i))"); done ;;
    sentinel)
      for ((i = 0; i < 3; i++)); do REDIS_SVCS+=("redis-$((REDIS_PORT + i))"); done
      for ((i = 0; i < 3; i++)); do SENTINEL_SVCS+=("sentinel-$((REDIS_PORT + 10 + i))"); done
      ;;
  esac
}

# Sets SAVED_MODE and SAVED_BROKERS from the saved topology; the single-node default
# when none is saved (a stack started before topologies existed is a single-node one).
topology_load_saved() {
  local mode=single brokers=1 key value
  if [[ -f "$TOPOLOGY_FILE" ]]; then
    while IFS='=' read -r key value; do
      case "$key" in
        redis) mode="$value" ;;
        kafka-brokers) brokers="$value" ;;
      esac
    done <"$TOPOLOGY_FILE"
    if ! redis_mode_valid "$mode" || ! kafka_brokers_valid "$brokers"; then
      die "cannot read the topology in $TOPOLOGY_FILE (redis=$mode, kafka-brokers=$brokers); fix or delete it"
    fi
  fi
  SAVED_MODE="$mode" SAVED_BROKERS="$brokers"
}

topology_save() {
  printf '# Written by deploy/local/stack up; a plain "stack up" resumes this topology.\nredis=%s\nkafka-brokers=%s\n' \
    "$REDIS_MODE" "$KAFKA_BROKERS" >"$TOPOLOGY_FILE.tmp"
  mv -f "$TOPOLOGY_FILE.tmp" "$TOPOLOGY_FILE"
}

topology_describe() {
  local mode="$1" brokers="$2" redis kafka="1 Kafka broker"
  case "$mode" in
    single) redis="a single Redis" ;;
    cluster) redis="a Redis Cluster (3 primaries + 3 replicas)" ;;
    sentinel) redis="Redis with Sentinel (a primary, 2 replicas, 3 sentinels)" ;;
  esac
  ((brokers == 1)) || kafka="$brokers Kafka brokers"
  printf '%s and %s\n' "$redis" "$kafka"
}

# The `up` flags that choose this topology ("" for the default).
topology_flags() {
  local mode="$1" brokers="$2" flags=""
  [[ "$mode" == single ]] || flags="--redis-$mode"
  ((brokers == 1)) || flags="${flags:+$flags }--kafka-brokers $brokers"
  printf '%s\n' "$flags"
}

topology_services() {
  printf '%s\n' "${KAFKA_SVCS[@]}" "${REDIS_SVCS[@]}" "${SENTINEL_SVCS[@]}"
}

kafka_node_id() {
  case "$1" in
    kafka) printf '1\n' ;;
    kafka-*) printf '%s\n' "${1#kafka-}" ;;
  esac
}

# The port a service listens on (clients connect here).
svc_port() {
  case "$1" in
    kafka) printf '%s\n' "$KAFKA_PORT" ;;
    kafka-*) printf '%s\n' "$((KAFKA_PORT + 10 * (${1#kafka-} - 1)))" ;;
    redis) printf '%s\n' "$REDIS_PORT" ;;
    redis-* | sentinel-*) printf '%s\n' "${1##*-}" ;;
    prometheus) printf '%s\n' "$PROMETHEUS_PORT" ;;
  esac
}

kafka_controller_port() {
  local id
  id="$(kafka_node_id "$1")"
  printf '%s\n' "$((KAFKA_CONTROLLER_PORT + 10 * (id - 1)))"
}

# Every port the service binds, as "PORT WHAT" lines, for the check before `up`.
svc_binds() {
  local port
  port="$(svc_port "$1")"
  printf '%s %s\n' "$port" "$1"
  case "$1" in
    kafka*) printf '%s %s controller\n' "$(kafka_controller_port "$1")" "$1" ;;
    redis-*) if [[ "$REDIS_MODE" == cluster ]]; then printf '%s %s cluster bus\n' "$((port + 10))" "$1"; fi ;;
  esac
}

svc_log() {
  case "$1" in
    kafka*) printf '%s\n' "$LOG_DIR/$1/server.log" ;;
    *) printf '%s\n' "$LOG_DIR/$1.log" ;;
  esac
}

# Data of each topology stays apart, so switching topologies never mixes them.
redis_data_dir() {
  case "$REDIS_MODE" in
    single) printf '%s\n' "$DATA_DIR/redis" ;;
    *) printf '%s\n' "$DATA_DIR/redis-$REDIS_MODE/$1" ;;
  esac
}

kafka_data_dir() {
  case "$1" in
    kafka) printf '%s\n' "$DATA_DIR/kafka" ;;
    *) printf '%s\n' "$DATA_DIR/kafka-brokers/$1" ;;
  esac
}

# -------------------------------------------------------- process ownership --

pid_file() { printf '%s/%s.pid\n' "$PID_DIR" "$1"; }

# Every service this script can start. Other components may keep pid files in the
# same runtime dir; `down` leaves those alone.
is_service() {
  [[ "$1" =~ ^(kafka(-[1-9])?|redis(-[0-9]+)?|sentinel-[0-9]+|prometheus)$ ]]
}

# A string that appears in the command line of our process and of no other:
# each one names a file or dir inside this runtime dir.
signature() {
  case "$1" in
    kafka | kafka-[1-9]) printf '%s\n' "$CONF_DIR/$1/server.properties" ;;
    redis | redis-[0-9]*) printf '%s\n' "$CONF_DIR/$1/redis.conf" ;;
    sentinel-[0-9]*) printf '%s\n' "$CONF_DIR/$1/sentinel.conf" ;;
    prometheus) printf '%s\n' "--storage.tsdb.path=$DATA_DIR/prometheus" ;;
    *) die "unknown service: $1" ;;
  esac
}

program_marker() {
  case "$1" in
    kafka | kafka-[1-9]) printf 'kafka.Kafka\n' ;;
    # Sentinels are redis-server in sentinel mode.
    redis | redis-[0-9]* | sentinel-[0-9]*) printf 'redis-server\n' ;;
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
  local name="$1" file pid
  file="$(pid_file "$name")"
  if [[ -f "$file" ]] && ! svc_pid "$name" >/dev/null; then
    pid="$(<"$file")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      warn "$name: removing stale pid file $file (pid $pid is not this stack's $name)"
    else
      warn "$name: removing stale pid file $file (pid $pid has exited)"
    fi
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

# Poll PROBE (which fills HEALTH/NOTE for the services it knows) until every named
# service is healthy; fail fast with a log tail if one of them dies, or after TIMEOUT.
wait_group() {
  local label="$1" timeout="$2" probe="$3"
  shift 3
  local deadline=$((SECONDS + timeout)) svc
  local -a sick
  while true; do
    "$probe" "$@"
    sick=()
    for svc in "$@"; do
      [[ "${HEALTH[$svc]:-}" == healthy ]] || sick+=("$svc")
    done
    ((${#sick[@]} == 0)) && return 0
    for svc in "$@"; do
      if ! svc_pid "$svc" >/dev/null; then
        log_tail "$(svc_log "$svc")"
        die "$svc: the process exited during start-up (log: $(svc_log "$svc"))"
      fi
    done
    if ((SECONDS >= deadline)); then
      log_tail "$(svc_log "${sick[0]}")"
      for svc in "${sick[@]}"; do
        printf 'stack: %-16s%s\n' "$svc" "${NOTE[$svc]:-not healthy}" >&2
      done
      die "$label: not healthy after ${timeout}s (logs in $LOG_DIR); it is still running, 'stack down' stops it"
    fi
    sleep 0.5
  done
}

# Is PID a live process? `kill -0` also succeeds on a zombie, which a container's init
# may take seconds to reap: a stop would wait that long for a process already dead.
running_pid() {
  local stat state
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  read -r state _ <<<"$stat"
  [[ "$state" != Z ]]
}

# Does process group PGID hold a live process (zombies aside)?
group_alive() {
  local member
  for member in $(pgrep -g "$1" 2>/dev/null); do
    running_pid "$member" && return 0
  done
  return 1
}

pgid_of() {
  # Field 5 of /proc/PID/stat, after the parenthesised command name.
  local stat pgid
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  read -r _ _ pgid _ <<<"$stat"
  printf '%s\n' "$pgid"
}

# SIGTERM every named service at once, wait up to STOP_TIMEOUT, then SIGKILL the
# process group of any that is left (Redis may have a fork for AOF rewrite). At once,
# because the nodes of a Kafka quorum each wait for the others during a controlled
# shutdown. Only ever touches a pid that svc_pid vouched for. With STOP_NOW=1 (`down
# --purge`: the data is deleted next, so a clean shutdown saves nothing) no wait at all:
# a Kafka broker's controlled shutdown takes seconds.
stop_svcs() {
  local name pid pgid deadline alive i
  local -a names=() pids=() pgids=()
  for name in "$@"; do
    clear_stale_pid "$name"
    if ! pid="$(svc_pid "$name")"; then
      info "$(printf '%-16s' "$name")not running"
      continue
    fi
    # launch() makes each service a process-group leader; only then is the group ours.
    pgid=""
    [[ "$(pgid_of "$pid" || true)" == "$pid" ]] && pgid="$pid"
    names+=("$name")
    pids+=("$pid")
    pgids+=("$pgid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  ((${#names[@]} > 0)) || return 0
  deadline=$((SECONDS + STOP_TIMEOUT))
  ((${STOP_NOW:-0})) && deadline=$SECONDS
  while ((SECONDS < deadline)); do
    alive=0
    for pid in "${pids[@]}"; do
      running_pid "$pid" && alive=1
    done
    ((alive)) || break
    sleep 0.2
  done
  for i in "${!names[@]}"; do
    name="${names[i]}" pid="${pids[i]}" pgid="${pgids[i]}"
    if running_pid "$pid"; then
      ((${STOP_NOW:-0})) || warn "$name: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
      if [[ -n "$pgid" ]]; then
        kill -KILL -- "-$pgid" 2>/dev/null || true
      else
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    # Leftover group members (e.g. a forked child) go too.
    if [[ -n "$pgid" ]] && group_alive "$pgid"; then
      sleep 0.5
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    while running_pid "$pid"; do sleep 0.1; done
    rm -f "$(pid_file "$name")"
    info "$(printf '%-16s' "$name")stopped (pid $pid)"
  done
}

stop_svc() { stop_svcs "$1"; }

# ------------------------------------------------------------------ health --
#
# Probes fill HEALTH[service] (healthy | UNHEALTHY) and NOTE[service] (what was seen):
# one probe looks at a whole group, since a node's health depends on its peers.
declare -gA HEALTH=() NOTE=()

mark() {
  HEALTH[$1]="$2"
  NOTE[$1]="$3"
}

# redis-cli against a data node. The password travels in the environment, never in argv
# (ps would show it); an empty REDISCLI_AUTH would still send AUTH, which a password-less
# Redis refuses. timeout: a hung (e.g. SIGSTOPped) server must not hang status or up.
rcli() {
  local port="$1"
  shift
  if [[ -n "$REDIS_PASSWORD" ]]; then
    REDISCLI_AUTH="$REDIS_PASSWORD" timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
  else
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
  fi
}

# Sentinels have no password of their own.
scli() {
  local port="$1"
  shift
  timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# "field:value" lines (INFO, CLUSTER INFO) -> value; redis-cli keeps the \r of each line.
info_field() {
  tr -d '\r' <<<"$2" | sed -n "s/^$1:\(.*\)$/\1/p" | head -n 1
}

kafka_python_ok() {
  "$PYTHON" -c 'import kafka' >/dev/null 2>&1
}

# The node ids of the unfenced brokers that a metadata answer lists, one per line.
kafka_broker_ids() {
  timeout 20 "$PYTHON" - "$1" <<'PY'
import sys
import time
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
conf = {"bootstrap_servers": sys.argv[1], "request_timeout_ms": 5000,
        "client_id": "rekap-stack-health"}
# kafka-python 3 waits 30 s to bootstrap by default; 2.x has no such option.
if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
    conf["bootstrap_timeout_ms"] = 5000
admin = KafkaAdminClient(**conf)
try:
    # The request goes to any broker the metadata names: one that just died (not fenced
    # yet) refuses the connection, and the next try picks another.
    for attempt in range(3):
        try:
            brokers = admin.describe_cluster()["brokers"]
            break
        except KafkaError:
            if attempt == 2:
                raise
            time.sleep(0.2)
finally:
    admin.close()
# The answer lists fenced brokers too: a dead broker stays listed, fenced, once its
# session times out; a restarted one is unfenced once it has caught up.
for b in brokers:
    if not b.get("is_fenced", False):
        print(b.get("broker_id", b.get("node_id")))
PY
}

probe_kafka() {
  local svc port ids="" bootstrap=""
  local -a open=()
  for svc in "$@"; do
    port="$(svc_port "$svc")"
    # Only open ports: a client bootstrapping against a closed one waits seconds.
    if port_in_use "$port"; then open+=("127.0.0.1:$port"); fi
  done
  if ((${#open[@]} > 0)) && kafka_python_ok; then
    bootstrap="$(
      IFS=,
      printf '%s' "${open[*]}"
    )"
    ids="$(kafka_broker_ids "$bootstrap" 2>/dev/null)" || ids=""
  fi
  for svc in "$@"; do
    port="$(svc_port "$svc")"
    if [[ " ${open[*]} " != *" 127.0.0.1:$port "* ]]; then
      mark "$svc" UNHEALTHY "port 127.0.0.1:$port closed"
    elif ! kafka_python_ok; then
      # Fallback without kafka-python: port open and the broker said it started.
      if grep -q 'Kafka Server started' "$(svc_log "$svc")" 2>/dev/null; then
        mark "$svc" healthy "started (no kafka-python for a metadata check)"
      else
        mark "$svc" UNHEALTHY "not started yet"
      fi
    elif grep -qx "$(kafka_node_id "$svc")" <<<"$ids"; then
      mark "$svc" healthy "broker $(kafka_node_id "$svc") in the metadata"
    else
      mark "$svc" UNHEALTHY "broker $(kafka_node_id "$svc") not (yet) in the metadata, or fenced"
    fi
  done
}

# Each service answers PING (before a cluster is formed, nothing more can be asked).
probe_ping() {
  local svc reply
  for svc in "$@"; do
    if [[ "$svc" == sentinel-* ]]; then
      reply="$(scli "$(svc_port "$svc")" ping 2>&1)" || reply=""
    else
      reply="$(rcli "$(svc_port "$svc")" ping 2>&1)" || reply=""
    fi
    if [[ "$reply" == PONG ]]; then
      mark "$svc" healthy "answers"
    else
      mark "$svc" UNHEALTHY "no answer${reply:+: ${reply%%$'\n'*}}"
    fi
  done
}

probe_redis() { probe_ping "$@"; }

# Healthy node: it answers, sees all 6 nodes, cluster_state:ok, and (a replica) its
# link to its primary is up.
probe_cluster() {
  local svc out state known role link
  for svc in "$@"; do
    out="$(printf 'CLUSTER INFO\nINFO replication\n' | rcli "$(svc_port "$svc")" 2>&1)" || out=""
    state="$(info_field cluster_state "$out")"
    if [[ -z "$state" ]]; then
      mark "$svc" UNHEALTHY "no answer${out:+: ${out%%$'\n'*}}"
      continue
    fi
    known="$(info_field cluster_known_nodes "$out")"
    role="$(info_field role "$out")"
    if [[ "$role" == slave ]]; then
      link="$(info_field master_link_status "$out")"
      NOTE[$svc]="replica of 127.0.0.1:$(info_field master_port "$out"), link $link"
    else
      link=up
      NOTE[$svc]="primary"
    fi
    if [[ "$state" == ok && "$known" == 6 && "$link" == up ]]; then
      HEALTH[$svc]=healthy
    else
      mark "$svc" UNHEALTHY "${NOTE[$svc]}, cluster_state:$state, $known of 6 nodes known"
    fi
  done
}

# The primary's port as the sentinels see it: the answer most of them give.
SENTINEL_PRIMARY=""

probe_sentinel() {
  local svc out addr port slaves others flags role mport online votes best=0
  local -A says=() count=()
  SENTINEL_PRIMARY=""
  for svc in "$@"; do
    [[ "$svc" == sentinel-* ]] || continue
    port="$(svc_port "$svc")"
    addr="$(scli "$port" SENTINEL get-master-addr-by-name "$SENTINEL_SERVICE" 2>/dev/null | tr -d '\r')" || addr=""
    if [[ "$addr" != 127.0.0.1$'\n'* ]]; then
      mark "$svc" UNHEALTHY "no primary address for '$SENTINEL_SERVICE'${addr:+: ${addr%%$'\n'*}}"
      continue
    fi
    addr="${addr#*$'\n'}"
    out="$(scli "$port" SENTINEL master "$SENTINEL_SERVICE" 2>/dev/null | tr -d '\r')" || out=""
    read -r slaves others flags < <(awk 'NR % 2 == 1 { k = $0; next } { v[k] = $0 }
      END { print v["num-slaves"] + 0, v["num-other-sentinels"] + 0, (v["flags"] == "" ? "?" : v["flags"]) }' <<<"$out")
    says[$svc]="$addr"
    count[$addr]=$((${count[$addr]:-0} + 1))
    if ((count[$addr] > best)); then
      best=${count[$addr]}
      SENTINEL_PRIMARY="$addr"
    fi
    NOTE[$svc]="primary 127.0.0.1:$addr, sees $slaves replicas and $others other sentinels"
    if [[ "$slaves" == 2 && "$others" == 2 && "$flags" == master ]]; then
      HEALTH[$svc]=healthy
    else
      mark "$svc" UNHEALTHY "${NOTE[$svc]} (of 2 and 2), flags $flags"
    fi
  done
  for svc in "${!says[@]}"; do
    if [[ "${says[$svc]}" != "$SENTINEL_PRIMARY" ]]; then
      mark "$svc" UNHEALTHY "names primary 127.0.0.1:${says[$svc]}, the others 127.0.0.1:$SENTINEL_PRIMARY"
    fi
  done
  for svc in "$@"; do
    [[ "$svc" == redis-* ]] || continue
    port="$(svc_port "$svc")"
    out="$(rcli "$port" INFO replication 2>&1)" || out=""
    role="$(info_field role "$out")"
    case "$role" in
      master)
        online="$(tr -d '\r' <<<"$out" | grep -c '^slave[0-9]*:.*state=online' || true)"
        NOTE[$svc]="primary, $online replicas online"
        if [[ "$port" != "$SENTINEL_PRIMARY" ]]; then
          mark "$svc" UNHEALTHY "runs as a primary, but the sentinels name ${SENTINEL_PRIMARY:+127.0.0.1:}${SENTINEL_PRIMARY:-none}"
        elif [[ "$online" == 2 ]]; then
          HEALTH[$svc]=healthy
        else
          mark "$svc" UNHEALTHY "${NOTE[$svc]} (of 2)"
        fi
        ;;
      slave)
        mport="$(info_field master_port "$out")"
        link="$(info_field master_link_status "$out")"
        NOTE[$svc]="replica of 127.0.0.1:$mport, link $link"
        if [[ "$link" == up && "$mport" == "$SENTINEL_PRIMARY" ]]; then
          HEALTH[$svc]=healthy
        else
          mark "$svc" UNHEALTHY "${NOTE[$svc]}; the sentinels name ${SENTINEL_PRIMARY:+127.0.0.1:}${SENTINEL_PRIMARY:-none}"
        fi
        ;;
      *) mark "$svc" UNHEALTHY "no answer${out:+: ${out%%$'\n'*}}" ;;
    esac
  done
}

# The Redis probe of the topology in use.
probe_redis_topology() {
  case "$REDIS_MODE" in
    single) probe_redis "$@" ;;
    cluster) probe_cluster "$@" ;;
    sentinel) probe_sentinel "$@" ;;
  esac
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
