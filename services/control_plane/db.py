"""Control-plane state: users, step runs, the audit trail, rule-set versions, app state.

SQLite by default, PostgreSQL when ``PA_CONTROL_PLANE_DATABASE_URL`` is set. The schema is owned by
Alembic (``services/control_plane/migrations``); ``migrate()`` brings a database to head at start.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
ACTIVE_STATUSES = ("queued", "running")
# One run per step at a time, enforced by the database: a partial unique index over active runs.
ONE_ACTIVE_RUN_WHERE = "status IN ('queued', 'running')"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes even for timezone=True columns."""
    return ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)


def iso(ts: datetime | None) -> str | None:
    ts = aware(ts)
    return ts.isoformat() if ts else None


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)  # None: external identity
    role: Mapped[str] = mapped_column(String(16), default="viewer")  # viewer | admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        Index(
            "uq_job_runs_one_active",
            "step",
            unique=True,
            sqlite_where=text(ONE_ACTIVE_RUN_WHERE),
            postgresql_where=text(ONE_ACTIVE_RUN_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step: Mapped[str] = mapped_column(String(64), index=True)
    # queued | running | succeeded | failed | cancelled | interrupted
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[str] = mapped_column(Text, default="{}")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str] = mapped_column(String(512), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_by: Mapped[str] = mapped_column(String(200), default="system")
    note: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON a step reports (backtest deltas)
    # where the step ran: "local" (a child process) or "databricks" (a job run or a pipeline update)
    backend: Mapped[str] = mapped_column(String(16), default="local")
    remote_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # job run id / pipeline update id
    remote_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # the run's page in the workspace

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def as_dict(self) -> dict[str, Any]:
        started, finished = aware(self.started_at), aware(self.finished_at)
        end = finished or (utcnow() if self.active else None)
        duration = round((end - started).total_seconds(), 2) if end and started else None
        return {
            "id": self.id,
            "step": self.step,
            "status": self.status,
            "exit_code": self.exit_code,
            "params": json.loads(self.params or "{}"),
            "started_by": self.started_by,
            "started_at": iso(started),
            "finished_at": iso(finished),
            "duration_s": duration,
            "note": self.note,
            "result": json.loads(self.result) if self.result else None,
            "backend": self.backend or "local",
            "remote_id": self.remote_id,
            "remote_url": self.remote_url,
        }


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)  # e.g. rule.create, model.promote
    target: Mapped[str] = mapped_column(String(300), default="")
    before: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    after: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": json.loads(self.before) if self.before else None,
            "after": json.loads(self.after) if self.after else None,
        }


class DraftRule(Base):
    """The working copy of the rule set: rules being edited, not yet published."""

    __tablename__ = "draft_rules"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)  # Rule JSON
    updated_by: Mapped[str] = mapped_column(String(200), default="system")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RuleSetVersion(Base):
    """Every published rule set; the newest row is the live one."""

    __tablename__ = "rule_set_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(100))  # v1, v2, ...
    full_version: Mapped[str] = mapped_column(String(120))  # what decisions report as rule_set_version
    content: Mapped[str] = mapped_column(Text)  # RuleSet JSON
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    comment: Mapped[str] = mapped_column(Text, default="")
    rolled_back_from: Mapped[int | None] = mapped_column(ForeignKey("rule_set_versions.id"), nullable=True)


class AppState(Base):
    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # WAL: readers never wait for the runner's writes
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
