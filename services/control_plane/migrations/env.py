"""Alembic environment: the engine comes from ``db.alembic_config`` (no alembic.ini, no URL in files)."""

from __future__ import annotations

from alembic import context

from services.control_plane.db import Base

config = context.config
engine = config.attributes["connection_engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
