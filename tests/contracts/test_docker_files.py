"""Dockerfile and docker-compose.yml agree with the code: the services exist, the api's environment uses only
.env.example's names, Ray runs with token auth on ray_cluster.yaml's ports, and the image serves ``python -m api``
on the default PORT. No Docker engine runs here, so nothing is built or started (README.md says so)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from storage.config import Settings
from tests.contracts.test_env_example import example_variables

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "redis", "ray-token", "ray-head", "migrate", "api"}


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, with continuation lines joined and comments dropped."""
    text = re.sub(r"(?m)^\s*#.*\n", "", (REPO / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def _head_ray_port() -> str:
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    (start,) = [c for c in config["head_start_ray_commands"] if " start --head" in c]
    found = re.search(r"--port=(\d+)", start)
    assert found is not None
    return found.group(1)


def test_compose_has_the_services_with_their_data_on_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["postgres"]["image"] == "postgres:15"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["redis"]["image"] == "redis:7"
    assert " ".join(services["redis"]["command"]).count("--appendonly yes") == 1, "AOF on"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    for name in ("ray-token", "ray-head", "migrate", "api"):
        assert services[name]["image"] == "i9lyfe:latest" and services[name]["build"] == ".", name
    assert services["migrate"]["command"] == ["python", "-m", "storage.migrate"]
    assert services["migrate"]["restart"] == "no"
    assert set(services["api"]["depends_on"]) == {"postgres", "redis", "ray-head", "migrate"}
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_ray_head_runs_with_token_auth_and_the_fixed_ports_of_ray_cluster_yaml() -> None:
    services = _compose()["services"]
    head = services["ray-head"]
    command = " ".join(head["command"])
    assert command.startswith("ray start --head --block")
    assert f"--port={_head_ray_port()}" in command and "--include-dashboard=false" in command
    cluster = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    (cluster_start,) = [c for c in cluster["head_start_ray_commands"] if " start --head" in c]
    ports = set(re.findall(r"--[a-z-]*port=\d+", command))
    assert ports == set(re.findall(r"--[a-z-]*port=\d+", cluster_start)), "the same ports as ray_cluster.yaml"
    token_path = head["environment"]["RAY_AUTH_TOKEN_PATH"]
    for name in ("ray-head", "api"):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == token_path, name
        assert any(v.startswith(f"ray-auth:{Path(token_path).parent}") for v in services[name]["volumes"]), name
    assert token_path in " ".join(services["ray-token"]["command"])
    # Containers are machines to Ray: the single-machine loopback switch must not be set anywhere.
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in json.dumps(services)
    gateway = (REPO / "scripts" / "container_gateway.sh").read_text()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=" not in gateway and "export RAY_AUTH_MODE=token" in gateway
    assert services["api"]["environment"]["RAY_ADDRESS"] == f"ray-head:{_head_ray_port()}"


def test_the_api_environment_uses_only_the_names_of_env_example() -> None:
    env = _compose()["services"]["api"]["environment"]
    unknown = sorted(set(env) - set(example_variables()))
    assert not unknown, f"set for the api in docker-compose.yml but not in .env.example: {unknown}"
    assert {"DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "JWT_SECRET"} <= set(
        env
    )
    assert "@postgres:5432/" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:6379/")


def test_the_image_serves_python_m_api_on_the_default_port_as_a_user() -> None:
    instructions = _dockerfile()
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert json.loads(instructions["CMD"][-1]) == ["python", "-m", "api"]
    assert "ENTRYPOINT" not in instructions
    default_port = Settings().port
    assert instructions["EXPOSE"] == [str(default_port)]
    assert any("-c /tmp/src/constraints.txt" in run for run in instructions["RUN"]), "pinned dependencies"
    assert instructions["USER"] == ["i9lyfe"]
    (healthcheck,) = instructions["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "'PORT', '8000'" in healthcheck
    # The compose api: the gateway script ends in `python -m api`, published on the port it listens on.
    api = _compose()["services"]["api"]
    assert api["command"] == ["i9lyfe-gateway"]
    assert "COPY scripts/container_gateway.sh /usr/local/bin/i9lyfe-gateway" in [
        f"COPY {c}" for c in instructions["COPY"]
    ]
    assert (REPO / "scripts" / "container_gateway.sh").read_text().rstrip().endswith("exec python -m api")
    assert (REPO / "scripts" / "container_gateway.sh").stat().st_mode & 0o111, "the gateway script is executable"
    assert api["environment"]["PORT"] == str(default_port)
    assert api["ports"] == [f"127.0.0.1:{default_port}:{default_port}"]
