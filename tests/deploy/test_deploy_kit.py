"""The deployment kit, checked where images cannot be built: the Dockerfile, compose.yaml, the systemd units and
.env.example set only real settings and run only real CLI commands and options; the image is slim, non-root and
installs from constraints.txt; compose gives Redis AOF and noeviction and migrates before the workers start;
.env.example lists every setting with its default; constraints.txt pins every declared dependency."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from bouncer_queue.config import Settings
from bouncer_queue.interfaces.cli import app

ROOT = Path(__file__).resolve().parents[2]
OUR_IMAGE = "bouncer-queue:latest"


def setting_names() -> set[str]:
    """Every environment variable Settings reads."""
    return {(field.alias or name).upper() for name, field in Settings.model_fields.items()}


# typer carries its own copy of click, so commands and options are recognised by shape, not by class.


def cli_envvars(command: Any = None) -> set[str]:
    """Every environment variable a CLI option reads (the simulator's BOUNCER_SIMULATOR_*)."""
    command = command or typer.main.get_command(app)
    found = {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}
    for sub in getattr(command, "commands", {}).values():
        found |= cli_envvars(sub)
    return found


def check_cli(args: list[str]) -> None:
    """Fail unless `bouncer-queue <args>` names an existing command, only options it has, and parses."""
    command: Any = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        assert rest[0] in command.commands, f"no command {rest[0]!r} in `bouncer-queue {' '.join(args)}`"
        command = command.commands[rest.pop(0)]
    options = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts] if opt.startswith("-")}
    for arg in rest:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"`bouncer-queue {' '.join(args)}`: no option {arg}"
    command.make_context("bouncer-queue", list(rest))  # raises on a wrong value or a missing argument


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of every Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


def our_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == OUR_IMAGE}


def test_dockerfile_is_slim_non_root_pinned_and_runs_the_console_script() -> None:
    steps = dockerfile()
    froms = [args for op, args in steps if op == "FROM"]
    assert froms and all("-slim" in image for image in froms)
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any("-c constraints.txt" in args for op, args in steps if op == "RUN")
    entry = [args for op, args in final if op == "ENTRYPOINT"]
    assert entry == ['["bouncer-queue"]']
    [cmd] = [args for op, args in final if op == "CMD"]
    check_cli(yaml.safe_load(cmd))
    env = dict(pair.split("=", 1) for op, args in final if op == "ENV" for pair in shlex.split(args))
    assert set(env) <= setting_names(), sorted(set(env) - setting_names())
    [health] = [args for op, args in final if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{env['METRICS_PORT']}/livez" in health


def test_compose_services_set_real_settings_and_run_real_commands() -> None:
    services = our_services()
    assert {"migrate", "workers", "serve", "simulator"} <= set(services)
    allowed = setting_names() | cli_envvars()
    for name, service in services.items():
        env = set(service.get("environment", {}))
        assert env <= allowed, f"{name} sets {sorted(env - allowed)}, which no setting reads"
        check_cli(service["command"])
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["workers"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["simulator"]["profiles"] == ["simulator"]
    shared = services["workers"]["environment"]
    assert shared["REDIS_URL"].startswith("redis://redis:") and shared["DATABASE_URL"].startswith("postgresql://")


def test_compose_redis_persists_and_never_evicts() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_serves_the_http_api_after_the_schema_upgrade() -> None:
    serve = our_services()["serve"]
    assert serve["command"][0] == "serve" and "8000:8000" in serve["ports"]
    assert serve["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("unit", sorted((ROOT / "deploy" / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_run_real_commands_with_real_settings(unit: Path) -> None:
    lines = unit.read_text(encoding="utf-8").splitlines()
    starts = [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]
    assert starts
    for start in starts:
        program, *args = shlex.split(start)
        assert program.endswith("/bin/bouncer-queue")
        check_cli(args)
    env = {line.split("=", 2)[1] for line in lines if line.startswith("Environment=")}
    assert env <= setting_names(), sorted(env - setting_names())
    assert "User=bouncer" in lines


def test_env_example_lists_every_setting_with_its_default() -> None:
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"#? ?([A-Z][A-Z0-9_]+)=(.*)", line):
            found[match.group(1)] = match.group(2)
    missing = setting_names() - set(found)
    assert not missing, f".env.example lacks {sorted(missing)}: run scripts/env_example.py"
    assert set(found) <= setting_names(), sorted(set(found) - setting_names())
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = found[(field.alias or name).upper()]
        expected = "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        assert shown == expected, f"{name}: .env.example says {shown!r}, the default is {expected!r}"


def test_constraints_pin_every_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    normalize = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    pinned = {
        normalize(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    names = {normalize(re.split(r"[\[<>=~!; ]", req, maxsplit=1)[0]) for req in declared}
    assert names <= pinned, f"not in constraints.txt (run scripts/lock): {sorted(names - pinned)}"
