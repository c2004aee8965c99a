"""ray_cluster.yaml is a config `ray up` accepts, and starts Ray and the gateways the way the project expects:
token auth on every node, gateways under systemd after Ray, the fixed ports docs/OPERATIONS.md lists."""

from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from storage.config import Settings

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "scripts" / "i9lyfe-api@.service"
GATEWAY_START = 'sudo systemctl restart "i9lyfe-api@$(whoami)"'
GATEWAY_STOP = 'sudo systemctl stop "i9lyfe-api@$(whoami)" || true'


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    return config


@dataclass
class RayStart:
    env: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)


def _ray_start(commands: list[str]) -> tuple[int, RayStart]:
    """The one `ray start` among ``commands``: its index, the variables set for it, its --flags."""
    found = []
    for index, command in enumerate(commands):
        words = shlex.split(command)
        at = next((i for i, w in enumerate(words[:-1]) if w.endswith("/ray") and words[i + 1] == "start"), None)
        if at is None:
            continue
        start = RayStart(env=dict(w.split("=", 1) for w in words[:at]))
        for word in words[at + 2 :]:
            assert word.startswith("--"), f"unexpected word {word!r} in {command!r}"
            name, _, value = word.partition("=")
            start.flags[name] = value
        found.append((index, start))
    assert len(found) == 1, f"expected one `ray start` in {commands}"
    return found[0]


def _unit() -> dict[str, list[str]]:
    """The [Service] settings of the gateway's systemd unit (a key may repeat, as Environment= does)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_ray_cluster_yaml_is_what_ray_up_accepts() -> None:
    config = _config()
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "local"
    # What `ray up` does with the file before it touches a machine: the on-premise preparation (which refuses
    # available_node_types) and the validation of the result.
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])


def test_every_node_starts_ray_with_token_auth_fixed_ports_and_no_loopback_switch() -> None:
    config = _config()
    _, head = _ray_start(config["head_start_ray_commands"])
    _, worker = _ray_start(config["worker_start_ray_commands"])
    token = config["file_mounts"]["~/i9lyfe-deploy/ray_auth_token"]
    assert token.startswith("./var/"), "the token must come from var/ (git-ignored), never from a committed file"
    for start in (head, worker):
        assert start.env["RAY_AUTH_MODE"] == "token"
        assert start.env["RAY_AUTH_TOKEN_PATH"] == "$HOME/i9lyfe-deploy/ray_auth_token"
        assert "--disable-usage-stats" in start.flags
    assert "--head" in head.flags and head.flags["--include-dashboard"] == "false"
    assert worker.flags["--address"] == f"$RAY_HEAD_IP:{head.flags['--port']}"
    head_only = ("--port", "--ray-client-server-port")
    shared = {k: v for k, v in head.flags.items() if k.endswith("-port") and k not in head_only}
    assert shared == {k: v for k, v in worker.flags.items() if k.endswith("-port")}, "workers use the head's ports"
    # Nodes of this cluster talk over the network: the single-machine loopback switch must not be anywhere.
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in json.dumps(config)
    assert not any("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in v for v in _unit().get("Environment", []))


def test_every_node_sets_up_like_make_run_and_starts_its_gateway_after_ray() -> None:
    config = _config()
    setup = " && ".join(config["setup_commands"])
    assert "-c ~/i9lyfe/constraints.txt -e ~/i9lyfe" in setup and "python3.11 -m venv" in setup
    assert "scripts/i9lyfe-api@.service /etc/systemd/system/" in setup
    assert any("python -m storage.migrate" in c for c in config["head_setup_commands"]), "migrations on the head"
    assert not any("storage.migrate" in c for c in config["setup_commands"]), "migrations run once, not per node"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        at, _ = _ray_start(commands)
        assert commands.index(GATEWAY_STOP) < at < commands.index(GATEWAY_START)
        assert any(c.endswith("ray stop") for c in commands[:at])

    unit = _unit()
    (exec_start,) = unit["ExecStart"]
    assert exec_start == (
        "/home/%i/i9lyfe/scripts/with_env.sh /home/%i/i9lyfe-deploy/i9lyfe.env /home/%i/i9lyfe-venv/bin/python -m api"
    )
    assert "~/i9lyfe-deploy/i9lyfe.env" in config["file_mounts"]
    env = dict(v.split("=", 1) for v in unit["Environment"])
    assert env == {
        "RAY_ADDRESS": "auto",  # the Ray node of this machine
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": "/home/%i/i9lyfe-deploy/ray_auth_token",  # the yaml's $HOME/... for User=%i
    }
    assert unit["User"] == ["%i"] and unit["KillSignal"] == ["SIGTERM"]
    assert (REPO / "scripts" / "with_env.sh").stat().st_mode & 0o111, "with_env.sh must be executable"


def _yaml_ports() -> dict[str, int]:
    config = _config()
    ports: dict[str, int] = {"PORT": Settings().port}  # the gateways (uvicorn)
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        _, start = _ray_start(commands)
        ports.update({k: int(v) for k, v in start.flags.items() if k.endswith("-port") or k == "--port"})
        ports.update({k: int(v) for k, v in start.env.items() if k.endswith("_PORT")})
    return ports


def _documented_ports() -> dict[str, int]:
    """The port table of OPERATIONS.md's "Network exposure": | port or a-b | `flag`[, `flag`] | ..."""
    text = (REPO / "docs" / "OPERATIONS.md").read_text()
    section = text.split("## Network exposure", 1)[1].split("\n## ", 1)[0]
    ports: dict[str, int] = {}
    for low, high, set_by in re.findall(r"(?m)^\| (\d+)(?:-(\d+))? \| ([^|]+) \|", section):
        names = re.findall(r"`([^`]+)`", set_by)
        values = [int(low), int(high)] if high else [int(low)]
        assert len(names) == len(values), f"row {low}: one name per port in {set_by!r}"
        ports.update(zip(names, values, strict=True))
    return ports


def test_the_ports_in_the_yaml_are_the_ones_operations_md_lists() -> None:
    documented = _documented_ports()
    assert documented == _yaml_ports()
    assert len(set(documented.values())) == len(documented), "two things on one port"
