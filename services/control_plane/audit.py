"""The audit trail: every mutating action, who, when, what, before and after."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.control_plane.db import AuditEvent


def record(
    db: Session,
    actor: str,
    action: str,
    target: str = "",
    *,
    before: Any = None,
    after: Any = None,
    commit: bool = True,
) -> AuditEvent:
    """Add an audit event to ``db``'s transaction (committed with the change it describes)."""
    event = AuditEvent(
        actor=actor,
        action=action,
        target=target,
        before=None if before is None else json.dumps(before, default=str, sort_keys=True),
        after=None if after is None else json.dumps(after, default=str, sort_keys=True),
    )
    db.add(event)
    if commit:
        db.commit()
    return event


def recent(db: Session, limit: int = 200, action_prefix: str | None = None, target: str | None = None) -> list[dict]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix))
    if target:
        query = query.where(AuditEvent.target == target)
    return [e.as_dict() for e in db.scalars(query)]
