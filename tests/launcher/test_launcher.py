"""The launcher: supervisord configuration, `up`/`status`/`down` with real servers, clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from launcher import infra, jars, services
from launcher.settings import REPO_ROOT, PlatformSettings


def _env(tmp_path: Path, **extra: int | str) -> dict[str, str]:
    ports = {
        "PA_KAFKA_PORT": infra.free_port(),
        "PA_KAFKA_CONTROLLER_PORT": infra.free_port(),
        "PA_REDIS_PORT": infra.free_port(),
        "PA_SCORING_API_PORT": infra.free_port(),
        "PA_CONTROL_PLANE_PORT": infra.free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update({k: str(v) for k, v in {**ports, **extra}.items()})
    env["PA_DATA_DIR"] = str(tmp_path / "data")
    env["PA_KAFKA_HEAP"] = "384m"
    return env


def _launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_up_status_down_infrastructure(tmp_path):
    env = _env(tmp_path)
    up = _launcher(env, "up", "--infra-only", "--detach", "--no-open")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "created topics: payments.transactions" in up.stdout
        key = (tmp_path / "data" / "scoring_api.key").read_text().strip()
        assert f"scoring API key: {key}" in up.stdout  # printed once, on the first `up`
        assert (tmp_path / "data" / "run" / "supervisord.conf").stat().st_mode & 0o777 == 0o600
        status = _launcher(env, "status")
        assert status.returncode == 0
        assert "infra:kafka" in status.stdout and "RUNNING" in status.stdout
        with socket.create_connection(("127.0.0.1", int(env["PA_REDIS_PORT"])), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16).startswith(b"+PONG")
        # a second `up` is a no-op, not a second broker
        assert "already running" in _launcher(env, "up", "--infra-only", "--detach", "--no-open").stdout
    finally:
        down = _launcher(env, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _launcher(env, "status").returncode == 3
    # data survives: storage is formatted once
    assert (tmp_path / "data" / "kafka" / "data" / "meta.properties").exists()


def test_taken_port_is_named_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _launcher(_env(tmp_path, PA_REDIS_PORT=port), "up", "--infra-only", "--detach", "--no-open")
    assert result.returncode == 2
    assert f"port 127.0.0.1:{port} for redis is already taken" in result.stderr
    assert "PA_REDIS_PORT" in result.stderr


def test_supervisord_conf_runs_every_program_with_its_environment(tmp_path):
    settings = PlatformSettings(data_dir=tmp_path, with_postgres=False)
    env = services.service_env(settings)
    programs = [
        services.Program("kafka", ["java", "-cp", "x/*", "kafka.Kafka"], 1),
        services.Program("simulator", [sys.executable, "-m", "services.simulator", "run"], None, env, group="services"),
    ]
    conf = services.supervisord_conf(settings, programs, foreground=True)
    assert "[program:kafka]" in conf and "[group:services]" in conf
    assert "stdout_logfile=/dev/fd/1" in conf  # foreground: all logs stream to the terminal
    assert 'PA_KAFKA_BOOTSTRAP="127.0.0.1:9092"' in conf
    assert "autostart=false" in conf.split("[program:simulator]")[1].split("[")[0]
    detached = services.supervisord_conf(settings, programs, foreground=False)
    assert f"stdout_logfile={tmp_path / 'logs' / 'kafka.log'}" in detached


def test_services_not_in_this_checkout_are_left_out():
    settings = PlatformSettings()
    assert all(services.module_available(p.argv[2]) for p in services.applications(settings))
    assert not services.module_available("services.no_such_service")


def test_spark_jars_leave_out_what_pyspark_ships():
    names = [p.name for p in jars.spark_jars()]
    assert any(n.startswith("spark-sql-kafka-0-10_2.13-4.2.0") for n in names)
    assert any(n.startswith("delta-spark_4.2_2.13-") for n in names)
    assert not any(n.startswith(("scala-library", "hadoop-client", "jackson-", "slf4j-api")) for n in names)


def test_first_up_creates_the_api_key_once_and_hands_it_to_the_control_plane(tmp_path, monkeypatch):
    """Auth is on under `make up` too: the key the scoring API requires (``<data_dir>/scoring_api.key``,
    mode 600) is created once, and the control plane (which calls /score) gets it."""
    monkeypatch.delenv("PA_SCORING_API_KEY", raising=False)
    settings = PlatformSettings(data_dir=tmp_path, with_postgres=False)
    key, created, path = services.ensure_api_key(settings)
    assert created and path == tmp_path / "scoring_api.key" and path.read_text().strip() == key
    assert path.stat().st_mode & 0o777 == 0o600 and len(key) >= 40
    assert services.ensure_api_key(settings) == (key, False, path)  # printed once: only when created
    programs = {p.name: p for p in services.applications(settings)}
    assert programs["control_plane"].env["PA_SCORING_API_KEY"] == key
    assert "PA_SCORING_API_KEY" not in programs["scoring_api"].env  # it reads the key file itself
    assert "PA_SCORING_API_KEY" not in services.service_env(settings)  # not every service
    monkeypatch.setenv("PA_SCORING_API_KEY", "mine")  # the operator's own key wins
    assert "PA_SCORING_API_KEY" not in {p.name: p for p in services.applications(settings)}["control_plane"].env


def test_make_up_runs_redis_with_an_append_only_file(tmp_path):
    argv = infra.redis_server(tmp_path, "127.0.0.1", 6390).argv()
    assert argv[argv.index("--appendonly") + 1] == "yes"  # `make up`: persistent
    throwaway = infra.redis_server(tmp_path, "127.0.0.1", 6391, persist=False).argv()
    assert throwaway[throwaway.index("--appendonly") + 1] == "no"  # the tests' servers
