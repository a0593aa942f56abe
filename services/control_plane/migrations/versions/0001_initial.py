"""Initial schema: users, job runs (one active run per step), audit trail, rules, app state.

A database created before migrations existed already has ``job_runs`` (without the newer columns);
it is upgraded in place instead of failing.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running')")
JOB_RUN_COLUMNS = (
    sa.Column("pid", sa.Integer(), nullable=True),
    sa.Column("started_by", sa.String(200), nullable=False, server_default="system"),
    sa.Column("note", sa.Text(), nullable=False, server_default=""),
    sa.Column("result", sa.Text(), nullable=True),
)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(300), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    )
    if "job_runs" in existing:
        # a pre-migration database: finish what was running, then add the new columns
        op.execute("UPDATE job_runs SET status = 'interrupted' WHERE status IN ('queued', 'running')")
        with op.batch_alter_table("job_runs") as batch:
            for column in JOB_RUN_COLUMNS:
                batch.add_column(column.copy())
    else:
        op.create_table(
            "job_runs",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("step", sa.String(64), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("params", sa.Text(), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("exit_code", sa.Integer(), nullable=True),
            sa.Column("log_path", sa.String(512), nullable=False),
            *(c.copy() for c in JOB_RUN_COLUMNS),
        )
        op.create_index("ix_job_runs_step", "job_runs", ["step"])
    op.create_index(
        "uq_job_runs_one_active", "job_runs", ["step"], unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_table(
        "draft_rules",
        sa.Column("rule_id", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "rule_set_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("full_version", sa.String(120), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("rolled_back_from", sa.Integer(), sa.ForeignKey("rule_set_versions.id"), nullable=True),
    )
    op.create_table(
        "app_state",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("app_state", "rule_set_versions", "draft_rules", "audit_events", "users"):
        op.drop_table(table)
    op.drop_index("uq_job_runs_one_active", "job_runs")
