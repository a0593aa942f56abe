"""Job runs remember where they ran: ``backend`` (local | databricks), the remote run or pipeline update
id and the run's page in the workspace.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="local"))
        batch.add_column(sa.Column("remote_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("remote_url", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("remote_url")
        batch.drop_column("remote_id")
        batch.drop_column("backend")
