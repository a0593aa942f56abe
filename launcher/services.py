"""What `make up` runs: the infrastructure servers and the four services, as supervisord programs."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from launcher import infra
from launcher.settings import REPO_ROOT, PlatformSettings


@dataclass
class Program:
    name: str
    argv: list[str]
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    group: str = "infra"  # infra starts first; services after topics and bootstrap
    stop_signal: str = "TERM"
    stop_wait_s: int = 20


def service_env(settings: PlatformSettings) -> dict[str, str]:
    """Environment every service gets: endpoints of the local platform."""
    env = {
        # `make up` is the local development platform: dev mode (no API keys required) unless overridden
        "PA_ENV": os.environ.get("PA_ENV", "dev"),
        "PA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PA_REDIS_URL": settings.redis_url,
        "PA_DATA_DIR": str(settings.data_dir),
        "PA_WAREHOUSE_DIR": str(settings.warehouse),
        "PA_TOPIC_PREFIX": settings.topic_prefix,
        "PA_SCORING_API_URL": f"http://{settings.host}:{settings.scoring_api_port}",
        "PA_MLFLOW_TRACKING_URI": f"sqlite:///{settings.data_dir / 'mlflow.db'}",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    if settings.with_postgres:
        env["PA_CONTROL_PLANE_DATABASE_URL"] = settings.postgres_url
    # the control plane starts and stops the simulator and the stream processor through supervisord
    env["PA_SUPERVISOR_URL"] = f"unix://{sock_path(settings)}"
    return env


def infrastructure(settings: PlatformSettings) -> list[Program]:
    data = settings.data_dir
    kafka = infra.kafka_server(
        data / "kafka", settings.host, settings.kafka_port, settings.kafka_controller_port, settings.kafka_heap
    )
    redis = infra.redis_server(data / "redis", settings.host, settings.redis_port)
    programs = [
        Program("kafka", kafka.argv(), settings.kafka_port, stop_wait_s=30),
        Program("redis", redis.argv(), settings.redis_port),
    ]
    if settings.with_postgres:
        pg = infra.postgres_server(data / "postgres", settings.host, settings.postgres_port)
        # SIGINT is PostgreSQL's "fast shutdown".
        programs.append(Program("postgres", pg.argv(), settings.postgres_port, stop_signal="INT"))
    return programs


def applications(settings: PlatformSettings) -> list[Program]:
    py = sys.executable
    env = service_env(settings)
    programs = [
        Program("simulator", [py, "-m", "services.simulator", "run"], None, env, group="services"),
        Program(
            "stream_processor",
            [py, "-m", "services.stream_processor", "run"],
            None,
            env,
            group="services",
            stop_signal="INT",
            stop_wait_s=60,
        ),
        Program(
            "scoring_api",
            [py, "-m", "services.scoring_api", "serve", "--port", str(settings.scoring_api_port)],
            settings.scoring_api_port,
            env,
            group="services",
        ),
        Program(
            "control_plane",
            [py, "-m", "services.control_plane", "serve", "--port", str(settings.control_plane_port)],
            settings.control_plane_port,
            {**env, **control_plane_key(settings)},
            group="services",
        ),
    ]
    return [p for p in programs if module_available(p.argv[2])]


def control_plane_key(settings: PlatformSettings) -> dict[str, str]:
    """The local API key (``ensure_api_key``) for the control plane's calls to /score, unless
    PA_SCORING_API_KEY is set in the environment. Only the control plane gets it: the scoring API
    reads the key file itself."""
    # imported here: the image runs `python -m launcher jars` before the services are copied in
    from services.scoring_api.keyfile import read_local_key  # noqa: PLC0415

    key = read_local_key(settings.data_dir)
    if not key or os.environ.get("PA_SCORING_API_KEY"):
        return {}
    return {"PA_SCORING_API_KEY": key}


def ensure_api_key(settings: PlatformSettings) -> tuple[str, bool, Path]:
    """Auth is on in every mode: the first `make up` creates the local API key the scoring API
    requires (``<data_dir>/scoring_api.key``, mode 600, git-ignored like the whole data folder).
    Returns (key, created now, where)."""
    from services.scoring_api.keyfile import ensure_local_key, local_key_path  # noqa: PLC0415 - as above

    key, created = ensure_local_key(settings.data_dir)
    return key, created, local_key_path(settings.data_dir)


def control_plane_init(settings: PlatformSettings) -> list[str] | None:
    """Prepares the control plane's database and first admin before the services start. The batch
    first run (backfill, ETL, gold views, bootstrap, training) is the control plane's own job, shown
    on /setup."""
    if not module_available("services.control_plane"):
        return None
    return [sys.executable, "-m", "services.control_plane", "init-admin"]


def module_available(module: str) -> bool:
    """Whether `python -m module` can run in this checkout."""

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def supervisord_conf(settings: PlatformSettings, programs: list[Program], foreground: bool) -> str:
    """supervisord configuration. In the foreground every program writes to supervisord's own stdout
    so `make up` streams all logs; detached, each program logs to .data/logs/<name>.log."""
    run = settings.data_dir / "run"
    lines = [
        "[supervisord]",
        f"nodaemon={'true' if foreground else 'false'}",
        f"logfile={settings.log_dir / 'supervisord.log'}",
        f"pidfile={run / 'supervisord.pid'}",
        f"directory={REPO_ROOT}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={run / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run / 'supervisor.sock'}",
        "",
    ]
    for priority, prog in enumerate(programs, start=1):
        env = {**prog.env}
        lines += [
            f"[program:{prog.name}]",
            "command=" + " ".join(_quote(a) for a in prog.argv),
            f"priority={priority * 10}",
            f"autostart={'true' if prog.group == 'infra' else 'false'}",
            "autorestart=unexpected",
            "startsecs=2",
            "startretries=3",
            f"stopsignal={prog.stop_signal}",
            f"stopwaitsecs={prog.stop_wait_s}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
        ]
        if foreground:
            lines += ["stdout_logfile=/dev/fd/1", "stdout_logfile_maxbytes=0"]
        else:
            lines += [
                f"stdout_logfile={settings.log_dir / (prog.name + '.log')}",
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=2",
            ]
        if env:
            lines.append("environment=" + ",".join(f'{k}="{_env_escape(v)}"' for k, v in env.items()))
        lines.append("")
    groups: dict[str, list[str]] = {}
    for prog in programs:
        groups.setdefault(prog.group, []).append(prog.name)
    for group, names in groups.items():
        lines += [f"[group:{group}]", "programs=" + ",".join(names), ""]
    return "\n".join(lines)


def _quote(arg: str) -> str:
    # supervisord splits `command` with shlex; "%" must be doubled (it expands %(ENV_X)s).
    return shlex.quote(arg).replace("%", "%%")


def _env_escape(value: str) -> str:
    return value.replace("%", "%%").replace('"', '\\"')


def sock_path(settings: PlatformSettings) -> Path:
    return settings.data_dir / "run" / "supervisor.sock"


def ensure_dirs(settings: PlatformSettings) -> None:
    for d in (settings.data_dir, settings.log_dir, settings.data_dir / "run", settings.warehouse):
        d.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
