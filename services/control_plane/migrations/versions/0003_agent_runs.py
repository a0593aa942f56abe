"""The analyst agents' runs (what was asked, who asked, the planner, the answer, the transcript of every
query, tool call and backtest) and the feedback people give on their recommendations (accepted into the
draft rule set or as a configuration change, or dismissed with a reason). The recommendations themselves
are rows of the lakehouse table ``approval_recommendations``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),  # specialist | question | scheduled
        sa.Column("agents", sa.Text, nullable=False, server_default="[]"),  # JSON list
        sa.Column("question", sa.Text, nullable=True),
        sa.Column("backtest", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("status", sa.String(16), nullable=False),  # running | succeeded | failed | interrupted
        sa.Column("planner", sa.String(16), nullable=False, server_default="rules"),  # rules | llm
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("notes", sa.Text, nullable=False, server_default="[]"),  # JSON list
        sa.Column("transcript", sa.Text, nullable=False, server_default="[]"),  # JSON list of events
        sa.Column("recommendation_ids", sa.Text, nullable=False, server_default="[]"),  # JSON list
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_agent_runs_started_at", "agent_runs", ["started_at"])
    op.create_table(
        "agent_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recommendation_id", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),  # accepted | dismissed
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("draft_rule_id", sa.String(64), nullable=True),
        sa.Column("config_change", sa.Text, nullable=True),  # JSON: the accepted configuration change
    )
    op.create_index("ix_agent_feedback_recommendation_id", "agent_feedback", ["recommendation_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_feedback_recommendation_id", table_name="agent_feedback")
    op.drop_table("agent_feedback")
    op.drop_index("ix_agent_runs_started_at", table_name="agent_runs")
    op.drop_table("agent_runs")
