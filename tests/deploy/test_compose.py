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


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as Compose resolves it (variables filled, paths absolute), all profiles."""
    out = compose("--profile", "demo", "config")
    assert out.returncode == 0, out.stderr
    config = load_yaml(out.stdout)
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
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
