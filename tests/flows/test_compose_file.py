"""docker-compose.yml, Dockerfile, prefect.yaml and the Makefile's operations targets, checked by
parsing (there is no Docker engine here): every service, volume, env file, build context, command
and file they refer to exists in the repository, and the commands parse with the real CLI."""

from __future__ import annotations

import importlib
import json
import re
import shlex

import pytest
import typer
import yaml

from midas.cli import app
from midas.config import load_settings

SERVICES = {"postgres", "prefect-server", "deploy", "worker", "collector"}


@pytest.fixture(scope="module")
def compose(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def prefect_yaml(repo_root):
    return yaml.safe_load((repo_root / "prefect.yaml").read_text())


def _parse_cli(args: list[str]):
    """Resolve `midas ...` args to a command and parse its options exactly as the CLI would."""
    command = typer.main.get_command(app)
    args = list(args)
    while hasattr(command, "commands"):          # a group: the first argument names the subcommand
        name = args.pop(0)
        assert name in command.commands, f"`midas` has no command {name!r}"
        command = command.commands[name]
    command.make_context(command.name, args)      # raises a usage error on a bad option or value
    return command


def test_every_service_exists_restarts_and_rotates_its_logs(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    assert {name: svc["restart"] for name, svc in services.items()} == {
        "postgres": "unless-stopped", "prefect-server": "unless-stopped", "deploy": "on-failure",
        "worker": "unless-stopped", "collector": "unless-stopped"}
    for name, svc in services.items():
        assert svc["logging"] == {"driver": "json-file", "options": {"max-size": "20m", "max-file": "5"}}, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_build_context_dockerfile_and_copied_paths_exist(compose, repo_root):
    built = {name: svc for name, svc in compose["services"].items() if "build" in svc}
    assert set(built) == {"prefect-server", "deploy", "worker", "collector"}
    for name, svc in built.items():
        context = repo_root / svc["build"]["context"]
        dockerfile = context / svc["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    dockerfile = (repo_root / "Dockerfile").read_text()
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, re.M)
    sources = [src for line in copied for src in line.split()]
    assert sources == ["pyproject.toml", "README.md", "midas", "flows", "sql", "prefect.yaml"]
    for src in sources:
        assert (repo_root / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    ignored = (repo_root / ".dockerignore").read_text().split()
    assert not set(sources) & set(ignored)
    assert {".env", "data", "logs", ".venv"} <= set(ignored)
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)


def _dockerfile_steps(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"\\\n", " ", text)
    return [(m.group(1).upper(), " ".join(m.group(2).split()))
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def test_the_image_compiles_the_rebuilds_numba_code_at_build_time(repo_root):
    """The image runs as `midas`; numba's cache of the book rebuild is written at build time into
    NUMBA_CACHE_DIR, a directory of that user outside the volumes, by a module that reaches every
    numba function of midas (tests/book/test_book_warmup.py runs it, with a cold cache)."""
    steps = _dockerfile_steps((repo_root / "Dockerfile").read_text())
    env = {}
    for instruction, args in steps:
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    cache = env["NUMBA_CACHE_DIR"]
    assert cache == "/home/midas/.cache/numba"
    volumes = json.loads(next(args for instruction, args in steps if instruction == "VOLUME"))
    assert volumes == ["/app/data", "/app/logs"]
    assert not any(cache == v or cache.startswith(v + "/") for v in volumes)     # a mount would hide it
    user_at = steps.index(("USER", "midas"))
    as_root = [args for instruction, args in steps[:user_at] if instruction == "RUN"]
    assert as_root == ['pip install -e . && useradd --create-home --uid 1000 midas && mkdir -p /app/data '
                       '/app/logs "$NUMBA_CACHE_DIR" && chown -R midas:midas /app/data /app/logs /home/midas/.cache']
    assert cache.startswith("/home/midas/.cache/")                                # so midas owns it
    as_midas = [args for instruction, args in steps[user_at:] if instruction == "RUN"]
    assert as_midas == ["python -m midas.book.warmup"]
    # after the code is copied and installed, as the user that runs the services
    assert max(i for i, (instruction, _) in enumerate(steps) if instruction in ("COPY", "WORKDIR")) < user_at
    warmup = importlib.import_module(shlex.split(as_midas[0])[2])
    assert callable(warmup.main)
    # the modules it reports on hold every numba function of midas (so a new one cannot be left out)
    decorated = set()
    for path in sorted((repo_root / "midas").rglob("*.py")):
        module = ".".join(path.relative_to(repo_root).with_suffix("").parts)
        for name in re.findall(r"^@(?:numba\.)?n?jit\b.*\n(?:@.*\n)*def (\w+)", path.read_text(), re.M):
            decorated.add(f"{module}.{name}")
    assert len(decorated) == 15
    assert set(warmup.numba_functions()) == decorated


def test_volumes_and_env_file(compose, repo_root):
    services = compose["services"]
    for name in ("prefect-server", "deploy", "worker", "collector"):
        assert services[name]["volumes"] == ["./data:/app/data", "./logs:/app/logs"], name
        assert services[name]["env_file"] == [{"path": ".env", "required": False}], name
        env = services[name]["environment"]
        assert env["DATA_DIR"] == "/app/data" and env["LOG_DIR"] == "/app/logs"
        assert env["PREFECT_LOGGING_EXTRA_LOGGERS"] == "midas"
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        # The MIDAS settings the compose file sets are valid settings.
        settings = load_settings(env_file=None, data_dir=env["DATA_DIR"], log_dir=env["LOG_DIR"])
        assert str(settings.log_dir) == "/app/logs"
    named = {v.split(":")[0] for v in services["postgres"]["volumes"]}
    assert named == set(compose["volumes"]) == {"prefect-db"}
    # .env itself is the user's (git-ignored); its template is in the repository.
    assert (repo_root / ".env.example").is_file()
    assert {"/data/", "/logs/", ".env"} <= set((repo_root / ".gitignore").read_text().split())


def test_ports_are_published_on_localhost_only(compose):
    published = {name: svc["ports"] for name, svc in compose["services"].items() if "ports" in svc}
    assert published == {"prefect-server": ["127.0.0.1:4200:4200"]}


def test_server_uses_postgresql(compose):
    server = compose["services"]["prefect-server"]
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url == "postgresql+asyncpg://prefect:${POSTGRES_PASSWORD:-prefect}@postgres:5432/prefect"
    importlib.import_module("asyncpg")          # the driver the URL names is installed
    assert server["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert compose["services"]["postgres"]["image"] == "postgres:16-alpine"


def test_every_command_parses_with_the_real_cli(compose, repo_root):
    commands = {name: svc["command"] for name, svc in compose["services"].items() if "command" in svc}
    assert set(commands) == {"prefect-server", "deploy", "worker", "collector"}
    resolved = {}
    for name, cmd in commands.items():
        if cmd[0] == "midas":
            resolved[name] = _parse_cli(cmd[1:]).name
        else:
            assert cmd[:2] == ["python", "-m"], name
            module_file = repo_root / (cmd[2].replace(".", "/") + ".py")
            assert module_file.is_file(), f"{name}: {module_file} missing"
            assert 'if __name__ == "__main__":' in module_file.read_text()
            resolved[name] = cmd[2]
    assert resolved == {"prefect-server": "server", "deploy": "deploy", "worker": "worker",
                        "collector": "flows.collect"}
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        _parse_cli(["ops", "worker", "--no-such-option"])
    with pytest.raises(Exception, match="Input should be a valid integer"):
        _parse_cli(["ops", "worker", "--limit", "x"])


def test_prefect_yaml_deployments(prefect_yaml, repo_root):
    assert prefect_yaml["build"] is None and prefect_yaml["push"] is None
    assert prefect_yaml["pull"] == [{"prefect.deployments.steps.set_working_directory":
                                     {"directory": "{{ $MIDAS_HOME }}"}}]
    deployments = {d["name"]: d for d in prefect_yaml["deployments"]}
    assert set(deployments) == {"midas-collect", "midas-hourly", "midas-backfill", "midas-symbol-hours"}
    flow_names = {}
    for name, d in deployments.items():
        path, func = d["entrypoint"].split(":")
        assert (repo_root / path).is_file()
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow_names[name] = getattr(module, func).name
        pool = d["work_pool"]
        assert pool["name"] == "midas-process"
        assert pool["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "midas"
    assert flow_names == {"midas-collect": "midas-collect", "midas-hourly": "midas-hourly",
                          "midas-backfill": "midas-backfill", "midas-symbol-hours": "midas-symbol-hours"}
    assert deployments["midas-hourly"]["parameters"] == {"fan_out": True}
    assert deployments["midas-hourly"]["schedules"] == [
        {"cron": "5 * * * *", "timezone": "UTC", "active": True}]
    assert "schedules" not in deployments["midas-backfill"]


def test_makefile_operations_targets(repo_root):
    text = (repo_root / "Makefile").read_text()
    recipes = {}
    for m in re.finditer(r"^([a-z-]+):[^=\n]*\n((?:\t.*\n)+)", text, re.M):
        recipes[m.group(1)] = [line.strip() for line in m.group(2).splitlines()]
    assert recipes["up"] == ["@mkdir -p data logs", "$(COMPOSE) up -d --build"]
    assert recipes["down"] == ["$(COMPOSE) down"]
    assert recipes["logs"] == ["$(COMPOSE) logs -f --tail=200"]
    for target in ("server", "worker", "deploy", "hourly-now"):
        (line,) = recipes[target]
        args = shlex.split(line)
        assert args[0] == "$(BIN)/midas"
        assert _parse_cli(args[1:]).name == target
