"""docker-compose.yml: valid for a real Compose parser, and everything it mounts exists.

No Docker engine runs here, but Compose validates and resolves a file without one.
The validator is Debian's ``docker-compose`` (v1, package docker-compose), which
``make setup`` installs; without it these tests fail and say how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make setup` (apt-get install {package})",
                    pytrace=False)
    return path


def compose(*args: str, env_file: Path = ENV_EXAMPLE, compose_file: Path = COMPOSE_FILE
            ) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on the repo with only ``env_file`` as its variables.

    The environment is reduced to PATH and HOME so a developer's own
    REKAP_REDIS_PASSWORD or a stray .env cannot make a broken file pass.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [tool("docker-compose", "docker-compose"), "-f", str(compose_file), "--project-directory", str(REPO),
         "--env-file", str(env_file), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False)


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)


PROFILES = ("demo", "scale")


def resolve(env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    """The compose file as Compose resolves it (variables filled, paths absolute), all profiles."""
    out = compose(*(arg for p in PROFILES for arg in ("--profile", p)), "config", env_file=env_file)
    assert out.returncode == 0, out.stderr
    config = load_yaml(out.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return resolve()


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"], ["--profile", "scale"]],
                         ids=["default", "demo", "scale"])
def test_compose_file_is_valid(profile: list[str]) -> None:
    out = compose(*profile, "config", "-q")
    assert out.returncode == 0, f"docker-compose rejected docker-compose.yml:\n{out.stderr}"


def test_validator_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The check above can fail: the same parser refuses a file with an unknown option."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    broken.write_text(text.replace("\n  redis:\n", "\n  redis:\n    no_such_option: 1\n", 1))
    assert broken.read_text() != text
    out = compose("config", "-q", compose_file=broken)
    assert out.returncode != 0
    assert "no_such_option" in out.stderr


def test_missing_redis_password_is_an_error(tmp_path: Path) -> None:
    """Without REKAP_REDIS_PASSWORD the file must not resolve to a password-less Redis."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = compose("config", "-q", env_file=empty)
    assert out.returncode != 0
    assert "REKAP_REDIS_PASSWORD" in out.stderr


def test_env_example_defines_every_required_variable() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))
    assert "REKAP_REDIS_PASSWORD" in required
    defined = {line.split("=", 1)[0].strip()
               for line in ENV_EXAMPLE.read_text().splitlines()
               if "=" in line and not line.lstrip().startswith("#")}
    assert required <= defined, f"missing from .env.example: {sorted(required - defined)}"


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are skipped."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((Path(volume["source"]), volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith(("/", ".")):
            mounts.append((Path(source), target))
    return mounts


def test_every_mounted_and_built_path_exists(resolved: dict[str, Any]) -> None:
    checked = 0
    for name, service in resolved["services"].items():
        build = service.get("build")
        if build:
            context = Path(build["context"] if isinstance(build, dict) else build)
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict)
                                    else "Dockerfile")
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            assert context.resolve().is_relative_to(REPO)
            checked += 1
        for host, target in _bind_mounts(service):
            assert host.exists(), f"{name}: mounts {host} -> {target}, which does not exist"
            assert host.resolve().is_relative_to(REPO), f"{name}: mounts {host} from outside the repo"
            checked += 1
        for env_file in service.get("env_file", []):
            assert Path(env_file).is_file(), f"{name}: env_file {env_file} missing"
    assert checked >= 5  # the image build + prometheus + grafana's two mounts, at least


def test_files_named_in_commands_exist_behind_their_mounts(resolved: dict[str, Any]) -> None:
    """A ``--flag=/container/path`` in a command must be a file of a bind mount."""
    for name, service in resolved["services"].items():
        mounts = _bind_mounts(service)
        for arg in service.get("command") or []:
            value = str(arg).split("=", 1)[-1]
            for host, target in mounts:
                if value.startswith(target.rstrip("/") + "/"):
                    local = host / value[len(target.rstrip("/")) + 1:]
                    assert local.exists(), f"{name}: {arg} -> {local} does not exist"


def test_grafana_provisioning_points_at_the_mounts(resolved: dict[str, Any]) -> None:
    grafana = resolved["services"]["grafana"]
    targets = {target: host for host, target in _bind_mounts(grafana)}
    provisioning = targets["/etc/grafana/provisioning"]
    datasource = load_yaml((provisioning / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["uid"] == "rekap-prometheus"
    assert ds["url"] == "http://prometheus:9090"
    provider = load_yaml((provisioning / "dashboards" / "rekap.yml").read_text())
    (prov,) = provider["providers"]
    assert prov["options"]["path"] in targets, "dashboard provider path is not a mount"
    assert targets[prov["options"]["path"]] == REPO / "deploy" / "grafana" / "dashboards"


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Container side of each published port: "127.0.0.1:16066:16066/tcp" -> 16066."""
    out = set()
    for p in service.get("ports", []):
        target = p["target"] if isinstance(p, dict) else str(p).rsplit(":", 1)[-1].split("/")[0]
        out.add(int(target))
    return out


def test_rekap_services(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    expected = {"worker": (["worker"], 16066), "ingest": (["ingest"], 16067),
                "exporter": (["exporter"], 16068)}
    for name, (command, port) in expected.items():
        svc = services[name]
        assert svc["command"] == command
        assert svc["environment"]["REKAP_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert svc["environment"]["REKAP_REDIS_URL"] == "redis://:change-me@redis:6379/0"
        assert port in _container_ports(svc), f"{name} does not publish {port}"
        assert "healthcheck" in svc
        assert str(port) in " ".join(svc["healthcheck"]["test"])
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["simulator"]["command"][:3] == ["simulate", "--via", "ingest"]
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["kafka"]["image"] == "apache/kafka:4.4.0"


def test_redis_never_evicts(resolved: dict[str, Any]) -> None:
    """Offset fences and sale_id de-dup keys live in Redis; rekap worker refuses other policies."""
    command = [str(arg) for arg in resolved["services"]["redis"]["command"]]
    assert "--maxmemory-policy" in command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_every_long_running_service_has_a_healthcheck(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot jobs
        assert "healthcheck" in service, f"{name} has no healthcheck"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_prometheus_configs_are_valid(config: str) -> None:
    path = REPO / "deploy" / "prometheus" / config
    out = subprocess.run([tool("promtool", "prometheus"), "check", "config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- profile scale: three KRaft brokers, a six-node Redis Cluster, a second worker ----

KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
REDIS_NODES = tuple(f"redis-node-{n}" for n in range(1, 7))
SCALE_SERVICES = {*KAFKA_NODES, *REDIS_NODES, "redis-cluster-init", "worker-2"}
REKAP_SERVICES = ("tokens", "worker", "worker-2", "ingest", "exporter", "simulator")
PASSWORD = "change-me"  # REKAP_REDIS_PASSWORD in .env.example


def _env_example_value(name: str) -> str:
    values = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                  if "=" in line and not line.lstrip().startswith("#"))
    return values[name]


def scale_env_lines() -> list[str]:
    """The ``.env`` lines for the scale profile, as the compose file's header documents them."""
    header = []
    for line in COMPOSE_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return [m.group(1) for line in header if (m := re.fullmatch(r"#\s+(REKAP_[A-Z_]+=\S+)\s*", line))]


@pytest.fixture(scope="module")
def scale_resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Resolved with .env.example plus the header's scale lines, as a user would set .env."""
    env = tmp_path_factory.mktemp("scale") / "scale.env"
    env.write_text(ENV_EXAMPLE.read_text() + "\n" + "\n".join(scale_env_lines()) + "\n")
    return resolve(env)


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port, short or long syntax."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
            continue
        parts = str(p).split("/")[0].split(":")
        assert len(parts) == 3, f"{p}: publish as HOST_IP:HOST_PORT:CONTAINER_PORT"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume (bind mounts skipped)."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                out[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if not source.startswith(("/", ".")):
            out[target] = source
    return out


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """"PLAINTEXT://kafka-1:9092,HOST://:19192" -> {"PLAINTEXT": ("kafka-1", 9092), "HOST": ("", 19192)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def _options(command: list[Any]) -> dict[str, str]:
    """redis-server's ``--name value`` pairs; every option takes exactly one value."""
    args = [str(a) for a in command]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    names = args[::2]
    assert len(names) == len(set(names)), f"an option given twice: {names}"
    return dict(zip((n[2:] for n in names), args[1::2], strict=True))


def test_scale_services_are_only_started_by_the_scale_profile(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    in_scale = {name for name, svc in services.items() if svc.get("profiles") == ["scale"]}
    assert in_scale == SCALE_SERVICES
    # Compose refuses to start a service whose dependency is in a profile that is off.
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
            dep_profiles = set(services[dep].get("profiles", []))
            assert dep_profiles <= set(svc.get("profiles", [])), \
                f"{name} depends on {dep}, which only profile(s) {sorted(dep_profiles)} start"


def test_kafka_brokers_form_one_quorum(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    envs = {name: services[name]["environment"] for name in KAFKA_NODES}
    node_ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in envs.items()}
    assert sorted(node_ids.values()) == [1, 2, 3]
    voter_lists = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs.values()}
    assert len(voter_lists) == 1, f"the brokers disagree on the voters: {voter_lists}"
    cluster_ids = {env["CLUSTER_ID"] for env in envs.values()}
    assert len(cluster_ids) == 1, f"the brokers disagree on the cluster id: {cluster_ids}"
    (voters,), (cluster_id,) = voter_lists, cluster_ids
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), cluster_id
    assert cluster_id != services["kafka"]["environment"]["CLUSTER_ID"]
    quorum = {}
    for voter in voters.split(","):
        node_id, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        quorum[int(node_id)] = (host, int(port))
    for name, env in envs.items():
        svc = services[name]
        assert svc["image"] == services["kafka"]["image"] == "apache/kafka:4.4.0"
        assert svc["hostname"] == name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        listeners = _listeners(env["KAFKA_LISTENERS"])
        advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        # This node's voter entry names this node, at its controller listener.
        assert quorum[node_ids[name]] == (name, listeners[controller][1]), (name, voters)
        assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == (name, listeners["PLAINTEXT"][1])
        protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(protocols) == set(listeners) and controller in listeners
        # Host clients are told 127.0.0.1 and the published port, which is this listener's.
        ((_, host_port, container_port),) = _published(svc)
        assert advertised["HOST"] == ("127.0.0.1", host_port)
        assert listeners["HOST"][1] == container_port == host_port
        assert _named_volumes(svc) == {env["KAFKA_LOG_DIRS"]: f"{name}-data"}
        assert "healthcheck" in svc and svc["restart"] == "unless-stopped"


def test_kafka_brokers_replicate_three_ways(resolved: dict[str, Any]) -> None:
    expected = {
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "2",
        "KAFKA_BROKER_SESSION_TIMEOUT_MS": "3000", "KAFKA_BROKER_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    for name in KAFKA_NODES:
        env = resolved["services"][name]["environment"]
        assert {k: str(env.get(k)) for k in expected} == expected, name


def test_redis_cluster_nodes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    single = _options(services["redis"]["command"][1:])
    assert services["redis"]["command"][0] == "redis-server"
    volumes = set()
    for name in REDIS_NODES:
        svc = services[name]
        opts = _options(svc["command"])
        assert svc["image"] == services["redis"]["image"]
        assert svc["hostname"] == name
        assert opts["cluster-enabled"] == "yes"
        assert opts["cluster-config-file"] == "nodes.conf"  # relative: in /data, the volume
        assert opts["cluster-preferred-endpoint-type"] == "hostname"
        assert opts["requirepass"] == opts["masterauth"] == single["requirepass"] == PASSWORD
        for key in ("appendonly", "save", "maxmemory-policy"):
            assert opts[key] == single[key], f"{name}: {key} differs from the single redis"
        assert opts["maxmemory-policy"] == "noeviction"
        assert svc["environment"]["REKAP_REDIS_PASSWORD"] == PASSWORD
        assert svc["healthcheck"] == services["redis"]["healthcheck"]
        # No host port: a redirect names redis-node-N, which only the compose network resolves.
        assert not svc.get("ports")
        (volume,) = _named_volumes(svc).values()
        assert _named_volumes(svc) == {"/data": volume}
        volumes.add(volume)
    assert len(volumes) == len(REDIS_NODES), "two nodes share a data volume"


def test_redis_node_entrypoint_announces_its_own_name(resolved: dict[str, Any], tmp_path: Path) -> None:
    """Run each node's entrypoint with stand-ins for the image's entrypoint and ``hostname``."""
    (tmp_path / "docker-entrypoint.sh").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    for name in REDIS_NODES:
        svc = resolved["services"][name]
        (tmp_path / "hostname").write_text(f"#!/bin/sh\necho {svc['hostname']}\n")
        for f in tmp_path.iterdir():
            f.chmod(0o755)
        argv = [str(a).replace("$$", "$") for a in [*svc["entrypoint"], *svc["command"]]]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        args = out.stdout.split("\n")[:-1]
        assert args[0] == "redis-server"
        assert args[1:] == [str(a) for a in svc["command"]] + ["--cluster-announce-hostname", name]


def test_redis_cluster_init_waits_for_every_node(resolved: dict[str, Any]) -> None:
    init = resolved["services"]["redis-cluster-init"]
    assert init["depends_on"] == {n: {"condition": "service_healthy"} for n in REDIS_NODES}
    assert init["restart"] == "no"
    assert init["environment"]["REDISCLI_AUTH"] == PASSWORD
    assert init["environment"]["REDIS_NODES"].split() == list(REDIS_NODES)


FAKE_REDIS_CLI = r"""#!/bin/sh
# Stand-in for redis-cli: logs its arguments, answers from $FAKE/state (fresh, formed, stuck, down).
echo "$*" >> "$FAKE/calls"
[ "$REDISCLI_AUTH" = "$FAKE_PASSWORD" ] || { echo "NOAUTH" >&2; exit 1; }
state=$(cat "$FAKE/state")
if [ "$1" = --cluster ]; then
  [ "$2 $state" = "create fresh" ] || exit 1
  echo formed > "$FAKE/state"; exit 0
fi
[ "$1" = -h ] || exit 2
host=$2; shift 2
case "$state $*" in
  "down cluster info") exit 1 ;;
  "fresh cluster info") printf 'cluster_state:fail\r\ncluster_slots_assigned:0\r\n' ;;
  *" cluster info") printf 'cluster_state:ok\r\ncluster_slots_assigned:16384\r\n' ;;
  *" info replication")
    case "$host" in
      redis-node-[456]) [ "$state" = stuck ] && link=down || link=up
                        printf 'role:slave\r\nmaster_link_status:%s\r\n' "$link" ;;
      *) printf 'role:master\r\n' ;;
    esac ;;
  *" cluster meet "*) echo OK ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""
FAKE_GETENT = """#!/bin/sh
case "$1 $2" in "hosts redis-node-"[1-6]) echo "172.30.0.1${2#redis-node-}  $2" ;; *) exit 2 ;; esac
"""


def run_init(init: dict[str, Any], tmp_path: Path, state: str
             ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run redis-cluster-init's script with stand-ins for redis-cli, getent and sleep."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"redis-cli": FAKE_REDIS_CLI, "getent": FAKE_GETENT,
                       "sleep": "#!/bin/sh\nexit 0\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "state").write_text(state + "\n")
    (tmp_path / "calls").write_text("")
    argv = [str(a).replace("$$", "$") for a in [*init["entrypoint"], *init["command"]]]
    env = {**{k: str(v) for k, v in init["environment"].items()},
           "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(tmp_path), "FAKE_PASSWORD": PASSWORD}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    return out, (tmp_path / "calls").read_text().splitlines()


def test_redis_cluster_init_creates_a_fresh_cluster(resolved: dict[str, Any], tmp_path: Path) -> None:
    out, calls = run_init(resolved["services"]["redis-cluster-init"], tmp_path, "fresh")
    assert out.returncode == 0, out.stderr
    (create,) = [c for c in calls if c.startswith("--cluster create")]
    args = create.split()
    addresses = [a for a in args if re.fullmatch(r"[\d.]+:\d+", a)]
    assert addresses == [f"172.30.0.1{n}:6379" for n in range(1, 7)]
    assert args[args.index("--cluster-replicas") + 1] == "1" and "--cluster-yes" in args
    assert not [c for c in calls if "cluster meet" in c]
    assert "cluster ready" in out.stdout


def test_redis_cluster_init_is_idempotent(resolved: dict[str, Any], tmp_path: Path) -> None:
    """On a formed cluster it creates nothing; it meets every node at its current address."""
    out, calls = run_init(resolved["services"]["redis-cluster-init"], tmp_path, "formed")
    assert out.returncode == 0, out.stderr
    assert not [c for c in calls if c.startswith("--cluster")]
    meets = {tuple(c.split()[1:2] + c.split()[-2:]) for c in calls if "cluster meet" in c}
    assert meets == {(n, f"172.30.0.1{m[-1]}", "6379") for n in REDIS_NODES for m in REDIS_NODES
                     if n != m}
    assert "cluster ready" in out.stdout


@pytest.mark.parametrize("state", ["down", "stuck"])
def test_redis_cluster_init_fails_loudly(resolved: dict[str, Any], tmp_path: Path, state: str) -> None:
    """No CLUSTER INFO, or replicas that never link: exit non-zero, never report ready."""
    out, calls = run_init(resolved["services"]["redis-cluster-init"], tmp_path, state)
    assert out.returncode != 0
    assert "cluster ready" not in out.stdout
    assert not [c for c in calls if c.startswith("--cluster create")]


def test_second_worker_joins_the_same_group(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    worker, worker2 = services["worker"], services["worker-2"]
    assert worker2["command"] == worker["command"] == ["worker"]
    assert worker2["environment"] == worker["environment"]  # same REKAP_APP_ID = same group
    assert worker2["build"] == worker["build"] and worker2["image"] == worker["image"]
    assert worker2["healthcheck"] == worker["healthcheck"]
    assert worker2["depends_on"] == {**{n: {"condition": "service_healthy"} for n in KAFKA_NODES},
                                     "redis-cluster-init": {"condition": "service_completed_successfully"}}
    ((_, _, port),) = _published(worker2)
    assert port == 16066
    runtime = worker["environment"]["REKAP_RUNTIME_DIR"]
    assert _named_volumes(worker2)[runtime] != _named_volumes(worker)[runtime]


def test_scale_env_lines_are_in_env_example() -> None:
    lines = scale_env_lines()
    assert {line.split("=", 1)[0] for line in lines} == {
        "REKAP_KAFKA_BOOTSTRAP", "REKAP_REDIS_SCHEME", "REKAP_REDIS_HOSTS", "REKAP_REPLICATION_FACTOR"}
    example = ENV_EXAMPLE.read_text().splitlines()
    for line in lines:
        assert f"# {line}" in example, f".env.example lacks the commented line {line!r}"


def test_default_rekap_services_use_the_single_nodes(resolved: dict[str, Any]) -> None:
    for name in REKAP_SERVICES:
        env = resolved["services"][name]["environment"]
        assert env["REKAP_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["REKAP_REDIS_URL"] == f"redis://:{PASSWORD}@redis:6379/0", name
        assert env["REKAP_REPLICATION_FACTOR"] in ("", None), name  # rekap's default


def test_scale_env_lines_point_rekap_at_the_scale_nodes(scale_resolved: dict[str, Any]) -> None:
    services = scale_resolved["services"]
    brokers = {"{}:{}".format(*_listeners(services[n]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
                              ["PLAINTEXT"]) for n in KAFKA_NODES}
    for name in REKAP_SERVICES:
        env = services[name]["environment"]
        assert set(env["REKAP_KAFKA_BOOTSTRAP"].split(",")) == brokers, name
        # redis+cluster://:<password>@h1:p1,h2:p2,.../0 (rekap.redisurl), split by hand.
        m = re.fullmatch(r"redis\+cluster://:(?P<pw>[^@]*)@(?P<hosts>[^/]+)/0", env["REKAP_REDIS_URL"])
        assert m, f"{name}: {env['REKAP_REDIS_URL']}"
        assert m["pw"] == _env_example_value("REKAP_REDIS_PASSWORD")
        seeds = [h.rsplit(":", 1) for h in m["hosts"].split(",")]
        assert len(seeds) >= 3
        for host, port in seeds:
            assert host in REDIS_NODES and port == _options(services[host]["command"])["port"], name
        assert env["REKAP_REPLICATION_FACTOR"] == services["kafka-1"]["environment"][
            "KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"


def test_host_ports_are_loopback_only_and_unique(resolved: dict[str, Any]) -> None:
    seen: dict[int, str] = {}
    for name, svc in resolved["services"].items():
        for host_ip, host_port, _ in _published(svc):
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on {host_ip or 'all interfaces'}"
            assert host_port not in seen, f"{name} and {seen[host_port]} both publish {host_port}"
            seen[host_port] = name
    assert {seen[p] for p in (19192, 19292, 19392)} == set(KAFKA_NODES)
    assert seen[16166] == "worker-2"


def test_every_named_volume_is_declared(resolved: dict[str, Any]) -> None:
    declared = set(resolved.get("volumes") or {})
    used: dict[str, set[str]] = {}
    for name, svc in resolved["services"].items():
        for volume in _named_volumes(svc).values():
            used.setdefault(volume, set()).add(name)
    assert set(used) <= declared, f"undeclared volumes: {sorted(set(used) - declared)}"
    assert declared <= set(used), f"unused volumes: {sorted(declared - set(used))}"
    # Data volumes belong to one service; only the rekap services share their runtime volume.
    for volume, names in used.items():
        assert len(names) == 1 or names <= set(REKAP_SERVICES), (volume, sorted(names))
