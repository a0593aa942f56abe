"""`python -m launcher ...`: the commands behind `make up`, `make down`, `make status`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import webbrowser
from typing import Annotated

import typer

from launcher import infra, jars, services, system, topics
from launcher.errors import PrerequisiteError
from launcher.settings import REPO_ROOT, get_settings

app = typer.Typer(help="Local payment-analysis platform (no Docker needed).", no_args_is_help=True)


def _fail(exc: PrerequisiteError) -> None:
    typer.secho(f"error: {exc.problem}", fg=typer.colors.RED, err=True)
    typer.secho(f"  fix: {exc.fix}", fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(2)


@app.command("install-system")
def install_system() -> None:
    """Install missing Debian packages (redis-server, postgresql) and check Java/Maven."""
    try:
        system.check_tools()
        missing = system.missing_packages()
        if missing:
            typer.echo(f"installing {' '.join(missing)} ...")
            system.install_packages(missing)
    except PrerequisiteError as exc:
        _fail(exc)


@app.command("jars")
def resolve_jars() -> None:
    """Resolve Kafka broker and Spark connector jars from Maven Central into .cache/jars."""
    try:
        for name in jars.POMS:
            typer.echo(f"{name}: {jars.resolve(name)}")
    except PrerequisiteError as exc:
        _fail(exc)


def _supervisorctl(*args: str) -> subprocess.CompletedProcess:
    conf = get_settings().data_dir / "run" / "supervisord.conf"
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args], capture_output=True, text=True
    )


def _running() -> bool:
    return services.sock_path(get_settings()).exists() and _supervisorctl("pid").returncode == 0


def _check_ports(programs: list[services.Program]) -> None:
    s = get_settings()
    env_names = {
        "kafka": "PA_KAFKA_PORT",
        "redis": "PA_REDIS_PORT",
        "postgres": "PA_POSTGRES_PORT",
        "scoring_api": "PA_SCORING_API_PORT",
        "control_plane": "PA_CONTROL_PLANE_PORT",
    }
    ports = [(p.name, p.port) for p in programs if p.port] + [("kafka controller", s.kafka_controller_port)]
    for name, port in ports:
        if not infra.port_is_free(s.host, port):
            raise PrerequisiteError(
                f"port {s.host}:{port} for {name} is already taken",
                f"stop what uses it (`ss -ltnp 'sport = :{port}'`) or set "
                f"{env_names.get(name, 'PA_KAFKA_CONTROLLER_PORT')} in .env",
            )


@app.command()
def up(
    detach: Annotated[bool, typer.Option(help="Run in the background; logs in .data/logs")] = False,
    services_: Annotated[bool, typer.Option("--services/--infra-only", help="Start the four services too")] = True,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the control plane")] = True,
) -> None:
    """Start Kafka, Redis (PostgreSQL with PA_WITH_POSTGRES=1), create topics, bootstrap, start services."""
    s = get_settings()
    if _running():
        typer.echo("already running; `make status` shows what, `make down` stops it")
        raise typer.Exit(0)
    try:
        system.check_tools()
        services.ensure_dirs(s)
        api_key, api_key_created, api_key_file = services.ensure_api_key(s)
        programs = services.infrastructure(s) + services.applications(s)
        _check_ports(programs)
    except PrerequisiteError as exc:
        _fail(exc)
    conf = s.data_dir / "run" / "supervisord.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)  # it holds the control plane's API key
    conf.write_text(services.supervisord_conf(s, programs, foreground=not detach))
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], cwd=REPO_ROOT, start_new_session=detach
    )
    try:
        sign_in = _start_sequence(s, services_)
        url = f"http://{s.host}:{s.control_plane_port}/"
        typer.secho(
            f"\npayment-analysis is up. Control plane: {url}  (scoring API http://{s.host}:{s.scoring_api_port}/docs)",
            fg=typer.colors.GREEN,
        )
        if sign_in:
            typer.secho(f"  {sign_in}", fg=typer.colors.GREEN, bold=True)
        if api_key_created:
            typer.secho(
                f"  scoring API key: {api_key}   (shown once; kept in {api_key_file}; "
                "send it as 'Authorization: Bearer <key>')",
                fg=typer.colors.GREEN,
                bold=True,
            )
        else:
            typer.echo(f"  scoring API key: in {api_key_file}")
        if services_:
            typer.echo(
                "  On a fresh data folder the control plane runs backfill, ETL, gold views, bootstrap and "
                "training in the background: progress on /setup."
            )
        if services_ and open_browser and os.environ.get("DISPLAY") and not os.environ.get("CI"):
            webbrowser.open(url)
        if detach:
            typer.echo("running in the background; `make status`, `make down`; logs in " + str(s.log_dir))
            return
        typer.echo("streaming logs; Ctrl-C stops everything")
        supervisord.wait()
    except KeyboardInterrupt:
        typer.echo("\nstopping ...")
        supervisord.send_signal(signal.SIGTERM)
        supervisord.wait(timeout=120)
    except Exception:
        _supervisorctl("shutdown")
        raise


def _start_sequence(s, with_services: bool) -> str | None:
    """Topics, servers ready, the control plane's database and admin, then the services. Returns how
    to sign in to the control plane."""
    sock = services.sock_path(s)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    topics.wait_for_broker(s.kafka_bootstrap, timeout=90)
    created = topics.ensure_topics(s.kafka_bootstrap, s.topic_prefix)
    if created:
        typer.echo(f"created topics: {', '.join(created)}")
    infra.wait_for_port(s.host, s.redis_port, timeout=30)
    if s.with_postgres:
        infra.wait_for_port(s.host, s.postgres_port, timeout=60)
        infra.postgres_ensure_database(s.host, s.postgres_port, "payment_analysis")
    if not with_services:
        return None
    env = {**os.environ, **services.service_env(s)}
    sign_in = None
    argv = services.control_plane_init(s)
    if argv:
        init = subprocess.run(argv, cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True)
        sign_in = init.stdout.strip().splitlines()[-1] if init.stdout.strip() else None
    result = _supervisorctl("start", "services:*")
    typer.echo(result.stdout.strip())
    return sign_in


@app.command()
def down() -> None:
    """Stop everything `make up` started (services first, then infrastructure)."""
    if not _running():
        typer.echo("not running")
        return
    _supervisorctl("stop", "services:*")
    _supervisorctl("shutdown")
    pidfile = get_settings().data_dir / "run" / "supervisord.pid"
    deadline = time.monotonic() + 120
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    typer.echo("stopped")


@app.command()
def status() -> None:
    """What runs where."""
    s = get_settings()
    if not _running():
        typer.echo("not running (start with `make up`)")
        raise typer.Exit(3)
    typer.echo(_supervisorctl("status").stdout.rstrip())
    typer.echo("")
    rows = [
        ("kafka", s.kafka_bootstrap),
        ("redis", s.redis_url),
        ("scoring api", f"http://{s.host}:{s.scoring_api_port}/docs"),
        ("control plane", f"http://{s.host}:{s.control_plane_port}/"),
        ("delta warehouse", str(s.warehouse)),
        ("logs", str(s.log_dir)),
    ]
    if s.with_postgres:
        rows.insert(2, ("postgres", s.postgres_url))
    for name, where in rows:
        typer.echo(f"  {name:<16} {where}")


@app.command("create-topics")
def create_topics() -> None:
    """Create the contract's topics on the configured broker (idempotent)."""
    s = get_settings()
    typer.echo(", ".join(topics.ensure_topics(s.kafka_bootstrap, s.topic_prefix)) or "all topics exist")
