"""Static checks of the Docker Compose deployment in ``compose/``.

No Docker engine runs here, so the files are checked as data: every service runs a real
``reconciler`` subcommand with arguments the CLI accepts, secrets only ever come from the
environment, the image runs as a non-root user, and ``.env.example`` documents every
variable.  When the compose plugin is installed, ``docker compose config`` (which needs no
engine) validates the file against the Compose specification as well.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cli.main import reconciler

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"

#: Service name -> the ``reconciler`` subcommand it must run.
APP_SERVICES = {"worker": "worker", "beat": "beat", "watcher": "watcher", "flower": "flower",
                "webhook": "webhook"}  # fmt: skip
#: Variables .env.example must document (the contract with operators).
DOCUMENTED = (
    "REDIS_URL",
    "RECONCILER_CONFIG",
    "KUBECONFIG",
    "RECONCILER_CACHE_DIR",
    "RECONCILER_REDIS_PREFIX",
    "FLOWER_BASIC_AUTH",
    "RECONCILER_WEBHOOK_GITHUB_SECRET",
    "RECONCILER_WEBHOOK_GITLAB_TOKEN",
    "RECONCILER_WEBHOOK_TOKEN",
    "RECONCILER_HTTP_TOKEN",
    "RECONCILER_GIT_TOKEN",
    "RECONCILER_GIT_SSH_KEY_FILE",
    "RECONCILER_WORKER_CONCURRENCY",
    "RECONCILER_ROUTE_LABEL",
    "RECONCILER_ROUTES",
)
SECRET_NAME = re.compile(
    r"password|passwd|secret|token|basic_auth|credential|private_key|api_key", re.I
)
#: A value that is only a compose variable reference: ``${VAR}``, ``${VAR:-default}``...
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}")
USERINFO_PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s@]+@")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict)
    return found


def subcommands() -> dict[str, click.Command]:
    """The subcommands ``reconciler`` knows, read from its click group."""
    return dict(reconciler.commands)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def walk(node: object, path: str = "") -> Iterator[tuple[str, object, object]]:
    """Every (path, key, value) of a YAML tree; list items have their index as key."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield f"{path}[{index}]", index, value
            yield from walk(value, f"{path}[{index}]")


def environment_of(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` in either compose form (map or ``KEY=VALUE`` list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {
            name: (value if sep else None)
            for name, sep, value in (str(item).partition("=") for item in env)
        }
    return {str(key): None if value is None else str(value) for key, value in env.items()}


def compose_default(value: str) -> str:
    """What ``${VAR:-default}`` expands to when VAR is unset; other text unchanged."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


# --------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------


def test_compose_file_parses_with_the_expected_services(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", *APP_SERVICES}


@pytest.mark.parametrize(("service", "subcommand"), sorted(APP_SERVICES.items()))
def test_command_is_a_real_reconciler_subcommand(
    services: dict[str, Any], service: str, subcommand: str
) -> None:
    command = services[service].get("command")
    assert isinstance(command, list), f"{service}: command must be an exec-form list"
    assert command[:2] == ["reconciler", subcommand], f"{service}: command is {command}"
    known = subcommands()
    # Deliberately a failure, not a skip: the compose file promises these subcommands.
    assert subcommand in known, (
        f"{service}: `reconciler {subcommand}` is not a subcommand of the CLI "
        f"(the CLI knows: {', '.join(sorted(known)) or 'none'})"
    )
    try:
        known[subcommand].make_context(subcommand, [str(arg) for arg in command[2:]])
    except click.ClickException as exc:
        pytest.fail(f"{service}: `{' '.join(map(str, command))}` is refused by the CLI ({exc})")


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_app_services_share_the_image_config_and_redis(
    services: dict[str, Any], service: str
) -> None:
    spec = services[service]
    build = spec["build"]
    assert build["context"] == ".."
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    env = environment_of(spec)
    assert compose_default(env["REDIS_URL"] or "") == "redis://redis:6379/0"
    assert env["RECONCILER_CONFIG"] == "/config/fleet.yaml"
    assert env["KUBECONFIG"] == "/config/kubeconfig"
    assert spec["depends_on"]["redis"]["condition"] == "service_healthy"
    assert ".env" in spec.get("env_file", [])
    mounts = {volume["target"]: volume for volume in spec["volumes"] if isinstance(volume, dict)}
    for target in ("/config/fleet.yaml", "/config/kubeconfig"):
        assert target in mounts, f"{service}: {target} is not mounted"
        assert mounts[target]["read_only"] is True, f"{service}: {target} must be read-only"
    assert "container_name" not in spec, f"{service}: container_name prevents scaling"


def test_workers_scale(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "ports" not in worker, "published ports would collide with --scale worker=N"
    assert "container_name" not in worker
    assert "deploy" not in worker or "replicas" not in worker.get("deploy", {})


@pytest.mark.parametrize(("service", "port"), [("flower", 5555), ("webhook", 8088)])
def test_published_ports(services: dict[str, Any], service: str, port: int) -> None:
    published = [str(item) for item in services[service].get("ports", [])]
    assert any(item.endswith(f":{port}") for item in published), published


def test_redis_persists_and_reports_health(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    text = " ".join(command) if isinstance(command, list) else str(command)
    assert re.search(r"--appendonly\s+yes", text), text
    named = [
        str(volume).split(":", 1)[0]
        for volume in redis["volumes"]
        if str(volume).split(":", 1)[-1].startswith("/data")
    ]
    assert named, "redis: /data must be on a volume"
    assert named[0] in (compose.get("volumes") or {}), "redis: /data must be a named volume"
    test = redis["healthcheck"]["test"]
    assert "redis-cli" in test
    assert "ping" in test


# --------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------


def test_no_literal_secret_in_the_compose_file(compose: dict[str, Any]) -> None:
    problems: list[str] = []
    for path, key, value in walk(compose):
        if isinstance(value, str) and USERINFO_PASSWORD.search(value):
            problems.append(f"{path}: a URL with a password")
        name, setting = (key if isinstance(key, str) else ""), value
        if isinstance(key, int) and isinstance(value, str) and "=" in value:
            name, _, setting = value.partition("=")  # environment as a KEY=VALUE list
        if not SECRET_NAME.search(name) or setting is None:
            continue
        if not (isinstance(setting, str) and REFERENCE.fullmatch(setting.strip())):
            problems.append(f"{path}: {name} has a literal value (use ${{VAR}} or env_file)")
        elif ":-" in setting and compose_default(setting.strip()):
            problems.append(f"{path}: {name} has a literal default")
    assert not problems, "\n".join(problems)


def test_flower_auth_comes_only_from_the_env_file(services: dict[str, Any]) -> None:
    assert "FLOWER_BASIC_AUTH" not in COMPOSE_FILE.read_text(encoding="utf-8")
    assert ".env" in services["flower"]["env_file"]
    assert "--basic-auth" not in " ".join(map(str, services["flower"]["command"]))


def test_env_file_is_not_the_example(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert ".env.example" not in services[name].get("env_file", [])


def test_dockerfile_runs_as_non_root_and_bakes_no_secret() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the Dockerfile must set USER"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    for keyword, rest in instructions:
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", rest)
            secret = [name for name in names if SECRET_NAME.search(name)]
            assert not secret, f"{keyword} {rest}: secrets must not be baked into the image"
        if keyword in ("COPY", "ADD"):
            sources = [arg for arg in rest.split()[:-1] if not arg.startswith("--")]
            assert not any(".env" in source for source in sources), f"{keyword} {rest}"
            assert not {".", "./"} & set(sources), (
                f"{keyword} {rest}: copying the whole context may bake in local secrets"
            )
        assert not USERINFO_PASSWORD.search(rest), f"{keyword}: a URL with a password"
    assert any(keyword == "RUN" and "pip install" in rest for keyword, rest in instructions)


# --------------------------------------------------------------------------------------
# .env.example
# --------------------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            values[name.strip()] = value.strip()
    return values


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    values = env_example()
    missing = [name for name in DOCUMENTED if name not in values]
    assert not missing, f".env.example does not document {missing}"
    referenced = {
        name
        for _, _, value in walk(compose)
        if isinstance(value, str)
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", value)
    }
    assert not referenced - set(values), f"undocumented: {sorted(referenced - set(values))}"


def test_env_example_holds_only_placeholders_for_secrets() -> None:
    for name, value in env_example().items():
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            assert "change-me" in value, f"{name}={value}: use a change-me placeholder"


# --------------------------------------------------------------------------------------
# docker compose config, when the compose plugin is installed
# --------------------------------------------------------------------------------------


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    if not _compose_plugin():
        pytest.skip("the docker compose plugin is not installed")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, work)
    shutil.copy(ENV_EXAMPLE, work / ".env")
    (work / "config").mkdir(exist_ok=True)
    (work / "config" / "fleet.yaml").write_text("clusters: []\napplications: []\n")
    (work / "config" / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    result = subprocess.run(
        ["docker", "compose", "-f", str(work / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
