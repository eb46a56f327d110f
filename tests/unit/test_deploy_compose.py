"""docker-compose.yml: valid Compose, wired to real Settings fields and real `streamrec` commands.

No Docker engine runs here, so these tests check what can be checked statically: the Compose
Specification schema (as vendored by check-jsonschema), the interpolation of required secrets, that
every STREAMREC_* variable is a Settings field and parses, and that every role's command line is one
the CLI accepts.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from typer.main import get_command
from typer.testing import CliRunner

from core.settings import KafkaTopics, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
TOPICS_SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"

ROLE_SERVICES = {"consumer": "consume", "retrain": "retrain", "serving": "serve"}
INIT_JOBS = {"kafka-init"}
REQUIRED_SECRETS = {"STREAMREC_ADMIN_KEY", "STREAMREC_INGEST_KEY", "GRAFANA_ADMIN_PASSWORD"}
# What an operator would export before `docker compose up`.
SAMPLE_ENV = {
    "STREAMREC_ADMIN_KEY": "admin-0123456789abcdef",
    "STREAMREC_INGEST_KEY": "ingest-0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariableError(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}` and `$$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset_or_empty = not current
        if op in (":-", "-") and (current is None or (op == ":-" and unset_or_empty)):
            return arg
        if op in (":?", "?") and (current is None or (op == ":?" and unset_or_empty)):
            raise MissingVariableError(f"{name}: {arg}")
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def raw_compose() -> dict[str, Any]:
    # safe_load resolves the `<<: *anchor` merge keys the file uses for the shared role settings.
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def compose(env: Mapping[str, str] = SAMPLE_ENV) -> dict[str, Any]:
    result = interpolate(raw_compose(), env)
    assert isinstance(result, dict)
    return result


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "a streamrec role needs an explicit command (the image's ENTRYPOINT is `streamrec`)"
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def settings_env_names(model: type[BaseModel], prefix: str = "STREAMREC_") -> set[str]:
    """Every variable pydantic-settings reads for `model`: sections, nested sections and leaves."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        name = prefix + field_name.upper()
        names.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= settings_env_names(annotation, name + "__")
    return names


# --- schema -----------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification() -> None:
    validator = Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_an_unknown_service_key() -> None:
    # Guards the test above against a schema that accepts anything.
    broken = compose()
    broken["services"]["consumer"]["replicaz"] = 3
    assert list(Draft202012Validator(compose_schema()).iter_errors(broken))


# --- secrets and interpolation ---------------------------------------------------------------


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_required_secret_missing_stops_compose_with_a_message(secret: str) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != secret}
    with pytest.raises(MissingVariableError, match=secret) as excinfo:
        compose(env)
    assert len(str(excinfo.value)) > len(secret) + 10, "the `${VAR:?message}` should say what to set"
    with pytest.raises(MissingVariableError, match=secret):
        compose({**env, secret: ""})


def test_only_the_documented_secrets_are_required() -> None:
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", COMPOSE_FILE.read_text(encoding="utf-8")))
    assert required == REQUIRED_SECRETS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for secret in REQUIRED_SECRETS:
        assert secret in readme


# --- services and ordering -------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if name in INIT_JOBS:
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"


def test_python_healthcheck_one_liners_compile() -> None:
    for name, service in compose()["services"].items():
        test = (service.get("healthcheck") or {}).get("test") or []
        if isinstance(test, list) and test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name}-healthcheck", "exec")


def test_depends_on_waits_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on form with a condition"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            expected = "service_completed_successfully" if dependency in INIT_JOBS else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dependency}"
    for role in ROLE_SERVICES:
        deps = set(services[role]["depends_on"])
        assert {"kafka-init", "mongo", "redis"} <= deps, f"{role} starts before its backing services"
    assert set(services["kafka-init"]["depends_on"]) == {"kafka"}


def test_consumer_can_be_scaled() -> None:
    consumer = compose()["services"]["consumer"]
    assert "container_name" not in consumer
    assert not consumer.get("ports"), "host ports would collide with --scale consumer=N"


def test_serving_runs_the_lean_image_and_the_other_roles_the_full_one() -> None:
    from tests.unit.test_deploy_dockerfile import FULL, SERVING, stage

    services = compose()["services"]
    expected = {"consumer": FULL, "retrain": FULL, "serving": SERVING}
    assert set(expected) == set(ROLE_SERVICES)
    for role, target in expected.items():
        build = services[role]["build"]
        assert isinstance(build, dict), f"{role}: name the Dockerfile target it runs"
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
        assert build["target"] == target and stage(target).name == target
    # One tag per target: a shared tag would let one role run the other target's build.
    assert services["consumer"]["image"] == services["retrain"]["image"] != services["serving"]["image"]


def test_mongo_runs_as_a_replica_set_named_in_the_uri() -> None:
    services = compose()["services"]
    mongo = services["mongo"]
    command = command_of(mongo)
    repl_set = command[command.index("--replSet") + 1]
    health = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in health and f"'{repl_set}'" in health
    assert "rs.status()" in health, "rs.initiate() must be guarded so the healthcheck stays idempotent"
    for role in ROLE_SERVICES:
        uri = environment_of(services[role])["STREAMREC_MONGO__URI"]
        assert f"replicaSet={repl_set}" in uri
        assert uri.startswith("mongodb://mongo:27017")


def test_kafka_runs_in_kraft_mode_with_the_bootstrap_the_roles_use() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for role in ROLE_SERVICES:
        bootstrap = environment_of(services[role])["STREAMREC_KAFKA__BOOTSTRAP"]
        assert any(listener.endswith("://" + bootstrap) for listener in advertised), bootstrap


def test_kafka_init_creates_the_topics_the_roles_read() -> None:
    services = compose()["services"]
    init_env = environment_of(services["kafka-init"])
    topic_vars = sorted("STREAMREC_KAFKA__TOPICS__" + field.upper() for field in KafkaTopics.model_fields)
    for role in ROLE_SERVICES:
        role_env = environment_of(services[role])
        for var in [*topic_vars, "STREAMREC_KAFKA__BOOTSTRAP"]:
            assert init_env[var] == role_env[var], f"kafka-init and {role} disagree on {var}"
    script = TOPICS_SCRIPT.read_text(encoding="utf-8")
    for var in topic_vars:
        assert f"${{{var}:?" in script, f"create-topics.sh does not create {var}"
    assert init_env.get("EVENTS_PARTITIONS", "6") == "6" and "EVENTS_PARTITIONS:-6" in script
    assert "--if-not-exists" in script
    mounts = [v.split(":")[:2] for v in services["kafka-init"]["volumes"]]
    assert ["./deploy/kafka/create-topics.sh", services["kafka-init"]["entrypoint"][-1]] in mounts


# --- settings --------------------------------------------------------------------------------


def test_every_streamrec_variable_is_a_settings_field() -> None:
    known = settings_env_names(Settings)
    assert "STREAMREC_KAFKA__TOPICS__EVENTS" in known  # the walk reaches nested sections
    for name, service in compose()["services"].items():
        for var in environment_of(service):
            if var.startswith("STREAMREC_"):
                assert var in known, f"{name} sets {var}, which no Settings field reads"


@pytest.mark.parametrize("role", sorted(ROLE_SERVICES))
def test_role_environment_builds_settings(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("STREAMREC_"):
            monkeypatch.delenv(var)
    env = environment_of(compose()["services"][role])
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.redis.url.get_secret_value() == "redis://redis:6379/0"
    if role == "serving":
        assert [k.get_secret_value() for k in settings.serving.api_keys_admin] == [
            SAMPLE_ENV["STREAMREC_ADMIN_KEY"]
        ]
        assert [k.get_secret_value() for k in settings.serving.api_keys_ingest] == [
            SAMPLE_ENV["STREAMREC_INGEST_KEY"]
        ]
        assert settings.serving.host == "0.0.0.0"


# --- commands --------------------------------------------------------------------------------


def streamrec_app() -> Any:
    from cli import main as cli_main

    cli_main.register_commands()
    return cli_main.app


def subcommands(command: Any) -> dict[str, Any]:
    # Typer ships its own copy of click, so groups are recognised by shape, not by class.
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else {}


def resolve(group: Any, argv: list[str]) -> tuple[list[str], Any, list[str]]:
    path: list[str] = []
    command = group
    rest = list(argv)
    while rest and rest[0] in subcommands(command):
        path.append(rest[0])
        command = subcommands(command)[rest.pop(0)]
    return path, command, rest


@pytest.mark.parametrize(("service", "subcommand"), sorted(ROLE_SERVICES.items()))
def test_service_command_is_a_real_streamrec_command(service: str, subcommand: str) -> None:
    argv = command_of(compose()["services"][service])
    app = streamrec_app()
    group = get_command(app)
    path, command, rest = resolve(group, argv)
    known = sorted(subcommands(group))
    assert path == [subcommand], f"`streamrec {shlex.join(argv)}`: no such command (known: {known})"
    assert not subcommands(command), f"`streamrec {subcommand}` is a group, not a command"
    # Parses the options exactly as the container would, without running the command.
    with command.make_context(f"streamrec {subcommand}", list(rest)) as ctx:
        assert not ctx.args, f"unexpected extra arguments {ctx.args}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_retrain_is_scheduled_every_15_minutes_and_after_the_first_events() -> None:
    # --after-events: a fresh stack serves a trained model minutes after traffic starts, not 15 min.
    assert command_of(compose()["services"]["retrain"]) == [
        "retrain",
        "--every",
        "15m",
        "--after-events",
        "1000",
    ]
