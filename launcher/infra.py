"""The infrastructure servers, each described once: how to prepare its data folder, the command
that runs it in the foreground, and how to tell it is ready.

`make up` hands these commands to supervisord; the test fixtures run the very same commands with
their own ports and data folders, so tests exercise what users run.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from launcher import jars
from launcher.errors import PrerequisiteError

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class ServerSpec:
    name: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)

    def argv(self) -> list[str]:
        if self.user and os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *self.command]
        return self.command


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


# --------------------------------------------------------------------------- Kafka

KAFKA_LOG4J = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[kafka] %d{HH:mm:ss} %-5p %c{1} - %m%n"
  Loggers:
    Root:
      level: warn
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: info
      - name: kafka.server.BrokerServer
        level: info
"""


def kafka_properties(host: str, port: int, controller_port: int, log_dir: Path) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
auto.create.topics.enable=true
# single node: every internal topic has one replica
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# dev/test: consumer groups start at once instead of waiting for more members
group.initial.rebalance.delay.ms=0
group.consumer.session.timeout.ms=10000
group.consumer.min.session.timeout.ms=3000
group.min.session.timeout.ms=3000
log.retention.hours=168
log.segment.bytes=268435456
num.network.threads=2
num.io.threads=4
"""


def kafka_server(data_dir: Path, host: str, port: int, controller_port: int, heap: str = "768m") -> ServerSpec:
    """Prepare (once) and describe a single-node KRaft broker+controller under ``data_dir``."""
    if shutil.which("java") is None:
        raise PrerequisiteError(
            "Java is not installed (Kafka needs Java 17+)", "apt-get install -y openjdk-17-jre-headless"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "server.properties"
    log_dir = data_dir / "data"
    config.write_text(kafka_properties(host, port, controller_port, log_dir))
    log4j = data_dir / "log4j2.yaml"
    log4j.write_text(KAFKA_LOG4J)
    classpath = jars.kafka_classpath()
    java = [
        "java",
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        classpath,
    ]
    if not (log_dir / "meta.properties").exists():
        # Storage is formatted once; a restart keeps topics and committed offsets. The id is passed
        # as --cluster-id=ID because a base64 id may start with "-" and read as an option.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            check=True,
            capture_output=True,
        )
    return ServerSpec("kafka", [*java, "kafka.Kafka", str(config)], port)


# --------------------------------------------------------------------------- Redis


def redis_server(data_dir: Path, host: str, port: int, persist: bool = True) -> ServerSpec:
    if shutil.which("redis-server") is None:
        raise PrerequisiteError(
            "redis-server is not installed", "make install-system (apt-get install -y redis-server)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    save = ["--save", "60 1000"] if persist else ["--save", ""]
    # persistent (`make up`): an append-only file too (fsync every second, Redis's default), so the
    # idempotency keys, velocity windows and the scoring API's decision outbox survive a restart up to
    # the last second, as under docker compose
    return ServerSpec(
        "redis",
        [
            "redis-server",
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            *save,
            "--appendonly",
            "yes" if persist else "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        port,
    )


# --------------------------------------------------------------------------- PostgreSQL


def postgres_server(data_dir: Path, host: str, port: int) -> ServerSpec:
    if not (POSTGRES_BIN / "postgres").exists():
        raise PrerequisiteError("PostgreSQL 15 is not installed", "make install-system (apt-get install -y postgresql)")
    user = None
    if os.geteuid() == 0:
        user = "postgres"  # PostgreSQL refuses to run as root
        pwd.getpwnam(user)
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = data_dir / "cluster"
    if user:
        shutil.chown(data_dir, user, user)
    if not (cluster / "PG_VERSION").exists():
        initdb = [str(POSTGRES_BIN / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        if user:
            initdb = ["runuser", "-u", user, "--", *initdb]
        subprocess.run(initdb, check=True, capture_output=True)
    spec = ServerSpec(
        "postgres",
        [
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(cluster),
            "-p",
            str(port),
            "-h",
            host,
            "-k",
            str(data_dir),
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=64MB",
        ],
        port,
        user=user,
    )
    return spec


def postgres_ensure_database(host: str, port: int, name: str) -> None:
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
