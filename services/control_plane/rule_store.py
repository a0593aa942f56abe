"""Rule authoring for the control plane: the draft (a working copy in ``draft_rules``), the live set (the
newest ``rule_set_versions`` row), validation with the real parser (errors carry their position), diffs,
activation, rollback and backtests of the draft.

Publishing goes through the backend's ``RulePublisher``: locally ``<data_dir>/rules/ruleset.json``
replaced atomically, on Databricks ``ruleset.json`` in the Unity Catalog volume folder
``PA_RULES_VOLUME_PATH``; the scoring API and the stream read that file through ``RuleSource`` and pick
a new set up within their refresh interval. The router stays thin: the semantics live here. Refusals
raise ``RuleError`` (an HTTP status and a JSON-able detail).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payments_core.rules.language import FIELDS, RuleSyntaxError, compile_condition, validate_condition
from payments_core.rules.model import (
    ACTIONS_HELP,
    OUTCOMES,
    ROUTES,
    Rule,
    RuleSet,
    RuleType,
    starter_rule_set,
)
from services.control_plane import audit
from services.control_plane.backends import BackendError, NotConfigured, RulePublisher, StepExecutor
from services.control_plane.db import AppState, DraftRule, JobRun, RuleSetVersion, iso, utcnow
from services.control_plane.runner import AlreadyRunning
from services.control_plane.steps import Step

log = logging.getLogger("control_plane.rules")

EDITABLE_FIELDS = ("id", "name", "type", "condition", "action", "priority", "active", "shadow", "description")
DIFF_FIELDS = EDITABLE_FIELDS[1:]  # what a reviewer compares; the id is the key
SERVER_FIELDS = ("version", "updated_by", "updated_at")  # set here, ignored when a client sends them
RULE_TYPES: tuple[str, ...] = get_args(RuleType)
ACTION_EXAMPLES = {
    "risk": list(OUTCOMES),
    "authentication": list(OUTCOMES),
    "routing": [f"route:{r}" for r in ROUTES],
    "retry": ["retry:30", "retry:3600", "no_retry"],
}
DRAFT_STATE_KEY = "rules.draft"  # app_state: the live version the draft was last reset to
DRAFT_LABEL = "draft"
SYSTEM = "system"
BACKTEST_NOTE = "rules draft"  # prefix of the run note that marks a backtest of a draft
BACKTEST_PARAMS = ("days", "max_rows")  # what a caller may set; the candidate file is ours
LOG_TAIL_BYTES = 4096

# The metrics the page highlights: (metric, label, format, which direction is better; None = neither)
BACKTEST_METRICS: tuple[tuple[str, str, str, str | None], ...] = (
    ("approval_rate", "Approval rate", "pct", "higher"),
    ("fraud_caught", "Fraud caught (count)", "count", "higher"),
    ("fraud_caught_rate", "Fraud caught (share of fraud)", "pct", "higher"),
    ("fraud_caught_value_usd", "Fraud caught (value, USD)", "usd", "higher"),
    ("fraud_approved_value_usd", "Fraud approved (value, USD)", "usd", "lower"),
    ("false_declines", "False declines (count)", "count", "lower"),
    ("false_decline_rate", "False decline rate", "pct", "lower"),
    ("false_decline_value_usd", "Legitimate value declined (USD)", "usd", "lower"),
    ("approved_value_usd", "Approved value (USD)", "usd", "higher"),
    ("decline_rate", "Decline rate", "pct", None),
    ("review_rate", "Review rate", "pct", None),
    ("challenge_rate", "3DS challenge rate", "pct", None),
    ("declines", "Declines (count)", "count", None),
    ("fraud_transactions", "Fraud transactions", "count", None),
    ("transactions", "Transactions replayed", "count", None),
)
_EPSILON = 1e-9

# One publication (first version, activation, rollback) at a time in this process.
_publish_lock = threading.RLock()


class RuleError(Exception):
    """A refused request: ``status`` (HTTP) and ``detail`` (a message or a JSON object)."""

    def __init__(self, status: int, detail: Any):
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail, default=str))
        self.status, self.detail = status, detail


# ------------------------------------------------------------------------------------------ validation
def position_detail(error: RuleSyntaxError, text: str) -> dict[str, Any]:
    """The parser's error as JSON: message, 1-based line/column, 0-based character offset into ``text``
    (what a textarea's selectionStart takes) and the offending source line."""
    lines = text.split("\n")  # the parser counts lines on \n, like a textarea's value
    line = min(max(error.line, 1), len(lines))
    column = max(error.column, 1)
    offset = sum(len(previous) + 1 for previous in lines[: line - 1]) + column - 1
    return {
        "field": "condition",
        "message": error.message,
        "line": error.line,
        "column": error.column,
        "pos": min(offset, len(text)),
        "source_line": lines[line - 1],
        "describe": f"line {error.line}, column {error.column}: {error.message}",
    }


def condition_error(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return {
            "field": "condition",
            "message": "the condition must be text",
            "line": 1,
            "column": 1,
            "pos": 0,
            "source_line": "",
            "describe": "line 1, column 1: the condition must be text",
        }
    error = validate_condition(text)
    return None if error is None else position_detail(error, text)


def _message(pydantic_error: ErrorDetails) -> str:
    return str(pydantic_error["msg"]).removeprefix("Value error, ")


def check_rule(
    body: dict[str, Any], *, partial: bool = False, version: int = 1, updated_by: str = SYSTEM
) -> tuple[Rule | None, list[dict[str, Any]]]:
    """Validate a rule as the client sent it: (the Rule, []) or (None, errors). Each error names its
    ``field``; a condition error also has ``line``, ``column`` and ``pos``. ``partial``: fields not
    given are not reported missing (checking a condition while it is typed)."""
    errors: list[dict[str, Any]] = [
        {"field": key, "message": f"unknown field {key!r}"}
        for key in sorted(set(body) - set(EDITABLE_FIELDS) - set(SERVER_FIELDS))
    ]
    values = {key: body[key] for key in EDITABLE_FIELDS if key in body}
    if "condition" in values:
        cond_error = condition_error(values["condition"])
        if cond_error:
            errors.append(cond_error)
    rule = None
    try:
        rule = Rule(**values, version=version, updated_by=updated_by, updated_at=utcnow())
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "action"  # the model check is action vs type
            if field == "condition" and any(e["field"] == "condition" for e in errors):
                continue  # already reported with its position
            if partial and err["type"] == "missing":
                continue
            errors.append({"field": field, "message": _message(err)})
    return (rule if not errors else None), errors


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """Check a condition (or a whole rule) without saving: what the page asks while the user types."""
    _rule, errors = check_rule(body, partial=True)
    fields_used: list[str] = []
    condition = body.get("condition")
    if isinstance(condition, str) and not any(e["field"] == "condition" for e in errors):
        fields_used = sorted(compile_condition(condition).fields)
    return {"valid": not errors, "errors": errors, "fields_used": fields_used}


def _checked(body: dict[str, Any], *, version: int, updated_by: str) -> Rule:
    rule, errors = check_rule(body, version=version, updated_by=updated_by)
    if rule is None:
        first = errors[0]
        raise RuleError(
            422, {"message": f"{first['field']}: {first.get('describe', first['message'])}", "errors": errors}
        )
    return rule


# ------------------------------------------------------------------------------------------ live set
def rule_set_of(row: RuleSetVersion) -> RuleSet:
    return RuleSet.from_json(row.content)


def initial_rule_set(publisher: RulePublisher) -> tuple[RuleSet, str]:
    """What is live before the control plane published anything: the published file when valid, else
    the starter set (what ``RuleSource`` serves then)."""
    try:
        content = publisher.read()
    except NotConfigured:  # no place to publish to yet: nothing can have been published
        content = None
    except (BackendError, OSError) as exc:
        raise RuleError(503, f"the published rule set {publisher.location} cannot be read: {exc}") from None
    if content is not None:
        try:
            return RuleSet.from_json(content), f"initial: the published {Path(publisher.location).name}"
        except ValueError as exc:
            log.warning("ignoring the invalid published rule set %s: %s", publisher.location, exc)
    return starter_rule_set(), "initial: the starter rule set"


def live_version(db: Session, publisher: RulePublisher) -> RuleSetVersion:
    """The newest published version; on first use the initial set is recorded as v1."""
    with _publish_lock:
        row = db.scalar(select(RuleSetVersion).order_by(RuleSetVersion.id.desc()).limit(1))
        if row is not None:
            return row
        rule_set, origin = initial_rule_set(publisher)
        # the content as it is, label and all: its full_version is what decisions already report
        row = RuleSetVersion(
            label="v1",
            full_version=rule_set.full_version,
            content=rule_set.model_dump_json(),
            created_by=SYSTEM,
            created_at=utcnow(),
            comment=origin,
        )
        db.add(row)
        db.commit()
        return row


def version_dict(row: RuleSetVersion, rule_set: RuleSet | None = None) -> dict[str, Any]:
    rule_set = rule_set or rule_set_of(row)
    return {
        "id": row.id,
        "label": row.label,
        "full_version": row.full_version,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "comment": row.comment,
        "rolled_back_from": row.rolled_back_from,
        "rules": len(rule_set.rules),
        "active_rules": sum(r.active and not r.shadow for r in rule_set.rules),
        "shadow_rules": sum(r.shadow for r in rule_set.rules),
    }


def published_file(publisher: RulePublisher) -> dict[str, Any]:
    """What /score and the stream read (or fall back to) right now."""
    path = publisher.location
    try:
        content = publisher.read()
    except (BackendError, OSError) as exc:
        return {"path": path, "exists": None, "full_version": None, "error": str(exc)[:500]}
    if content is None:
        return {"path": path, "exists": False, "full_version": starter_rule_set().full_version, "error": None}
    try:
        return {"path": path, "exists": True, "full_version": RuleSet.from_json(content).full_version, "error": None}
    except ValueError as exc:
        return {"path": path, "exists": True, "full_version": None, "error": str(exc)[:500]}


# ------------------------------------------------------------------------------------------ diffs
def rule_dict(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(mode="json")


def _changed_fields(before: Rule, after: Rule) -> list[dict[str, Any]]:
    return [
        {"field": f, "before": getattr(before, f), "after": getattr(after, f)}
        for f in DIFF_FIELDS
        if getattr(before, f) != getattr(after, f)
    ]


def diff_rules(before: list[Rule], after: list[Rule]) -> dict[str, Any]:
    """Added, removed and changed rules (field by field) going from ``before`` to ``after``."""
    old, new = {r.id: r for r in before}, {r.id: r for r in after}
    changed = []
    for rule_id in sorted(old.keys() & new.keys()):
        fields = _changed_fields(old[rule_id], new[rule_id])
        if fields:
            changed.append({"id": rule_id, "name": new[rule_id].name, "fields": fields})
    added = [rule_dict(new[i]) for i in sorted(new.keys() - old.keys())]
    removed = [rule_dict(old[i]) for i in sorted(old.keys() - new.keys())]
    return {"added": added, "removed": removed, "changed": changed, "identical": not (added or removed or changed)}


def diff_summary(diff: dict[str, Any]) -> dict[str, int]:
    return {key: len(diff[key]) for key in ("added", "removed", "changed")}


# ------------------------------------------------------------------------------------------ draft
def _draft_base(db: Session) -> dict[str, Any] | None:
    row = db.get(AppState, DRAFT_STATE_KEY)
    return json.loads(row.value) if row else None


def reset_draft(db: Session, rule_set: RuleSet, base_version_id: int) -> None:
    """Replace the draft with ``rule_set`` (in ``db``'s transaction; the caller commits)."""
    db.execute(delete(DraftRule))
    for rule in rule_set.rules:
        db.add(DraftRule(rule_id=rule.id, body=rule.model_dump_json(), updated_by=rule.updated_by, updated_at=utcnow()))
    state = {"base_version_id": base_version_id}
    row = db.get(AppState, DRAFT_STATE_KEY)
    if row is None:
        db.add(AppState(key=DRAFT_STATE_KEY, value=json.dumps(state), updated_at=utcnow()))
    else:
        row.value, row.updated_at = json.dumps(state), utcnow()


def _draft_rows(db: Session, publisher: RulePublisher) -> list[DraftRule]:
    """The draft's rows; a draft never started is a copy of the live set (an emptied draft stays empty)."""
    rows = list(db.scalars(select(DraftRule).order_by(DraftRule.rule_id)))
    if not rows and _draft_base(db) is None:
        live = live_version(db, publisher)
        reset_draft(db, rule_set_of(live), live.id)
        db.commit()
        rows = list(db.scalars(select(DraftRule).order_by(DraftRule.rule_id)))
    return rows


def _parse_row(row: DraftRule) -> tuple[Rule | None, str | None]:
    try:
        return Rule.model_validate_json(row.body), None
    except ValueError as exc:  # stored under an older language or field list: shown, not published
        return None, str(exc)[:500]


def draft_rule_set(db: Session, publisher: RulePublisher) -> RuleSet:
    rules, broken = [], []
    for row in _draft_rows(db, publisher):
        rule, error = _parse_row(row)
        if rule is None:
            broken.append(f"{row.rule_id}: {error}")
        else:
            rules.append(rule)
    if broken:
        raise RuleError(
            422,
            {"message": "fix or delete the draft rules that no longer validate: " + "; ".join(broken), "errors": []},
        )
    return as_draft_set(rules)


def as_draft_set(rules: list[Rule]) -> RuleSet:
    """The draft as a rule set, in evaluation order (the content hash depends on the order)."""
    return RuleSet(version=DRAFT_LABEL, rules=sorted(rules, key=lambda r: (r.priority, r.id)))


def draft_view(db: Session, publisher: RulePublisher) -> dict[str, Any]:
    """Everything the page shows at once: live version, published file, draft rules with their status
    against live, the diff."""
    live = live_version(db, publisher)
    live_set = rule_set_of(live)
    live_by_id = {r.id: r for r in live_set.rules}
    rules, valid_rules = [], []
    for row in _draft_rows(db, publisher):
        rule, error = _parse_row(row)
        if rule is None:
            rules.append({**json.loads(row.body), "status": "invalid", "error": error, "changed_fields": []})
            continue
        valid_rules.append(rule)
        before = live_by_id.get(rule.id)
        fields = [] if before is None else [c["field"] for c in _changed_fields(before, rule)]
        status = "added" if before is None else ("changed" if fields else "unchanged")
        rules.append({**rule_dict(rule), "status": status, "changed_fields": fields})
    rules.sort(key=lambda r: (r.get("priority", 0), r.get("id", "")))
    diff = diff_rules(live_set.rules, valid_rules)
    file = published_file(publisher)
    draft_set = as_draft_set(valid_rules)
    return {
        "live": {**version_dict(live, live_set), "file_in_sync": file["full_version"] == live.full_version},
        "file": file,
        "draft": rules,
        "diff": diff,
        "draft_full_version": draft_set.full_version,
        "draft_base_version_id": (_draft_base(db) or {}).get("base_version_id"),
    }


def create_rule(db: Session, publisher: RulePublisher, body: dict[str, Any], actor: str) -> dict[str, Any]:
    _draft_rows(db, publisher)  # a new rule joins a copy of the live set, not an empty draft
    rule = _checked(body, version=1, updated_by=actor)
    if db.get(DraftRule, rule.id) is not None:
        raise RuleError(409, f"rule {rule.id!r} is already in the draft; edit it instead")
    db.add(DraftRule(rule_id=rule.id, body=rule.model_dump_json(), updated_by=actor, updated_at=utcnow()))
    audit.record(db, actor, "rule.create", rule.id, after=rule_dict(rule), commit=False)
    try:
        db.commit()
    except IntegrityError:  # created by someone else meanwhile
        db.rollback()
        raise RuleError(409, f"rule {rule.id!r} is already in the draft; edit it instead") from None
    return rule_dict(rule)


def update_rule(
    db: Session, publisher: RulePublisher, rule_id: str, body: dict[str, Any], actor: str
) -> dict[str, Any]:
    _draft_rows(db, publisher)
    row = db.get(DraftRule, rule_id)
    if row is None:
        raise RuleError(404, f"no rule {rule_id!r} in the draft")
    if body.get("id", rule_id) != rule_id:
        raise RuleError(
            422,
            {
                "message": "a rule's id cannot change; create a new rule and delete this one",
                "errors": [{"field": "id", "message": "a rule's id cannot change"}],
            },
        )
    before = json.loads(row.body)
    rule = _checked({**body, "id": rule_id}, version=int(before.get("version", 1)), updated_by=actor)
    row.body, row.updated_by, row.updated_at = rule.model_dump_json(), actor, utcnow()
    audit.record(db, actor, "rule.update", rule_id, before=before, after=rule_dict(rule), commit=False)
    db.commit()
    return rule_dict(rule)


def delete_rule(db: Session, publisher: RulePublisher, rule_id: str, actor: str) -> dict[str, Any]:
    _draft_rows(db, publisher)
    row = db.get(DraftRule, rule_id)
    if row is None:
        raise RuleError(404, f"no rule {rule_id!r} in the draft")
    before = json.loads(row.body)
    db.delete(row)
    audit.record(db, actor, "rule.delete", rule_id, before=before, commit=False)
    db.commit()
    return {"deleted": rule_id}


def discard_draft(db: Session, publisher: RulePublisher, actor: str) -> dict[str, Any]:
    """Throw the draft's changes away: the draft becomes the live set again."""
    live = live_version(db, publisher)
    before = [json.loads(r.body) for r in _draft_rows(db, publisher)]
    reset_draft(db, rule_set_of(live), live.id)
    audit.record(
        db, actor, "rule.discard_draft", live.label, before=before, after={"reset_to": live.label}, commit=False
    )
    db.commit()
    return {"reset_to": live.label}


# ------------------------------------------------------------------------------------------ publish
def _publish(
    db: Session, rules: list[Rule], actor: str, comment: str, rolled_back_from: int | None = None
) -> tuple[RuleSetVersion, RuleSet]:
    """Add the next version (v<n+1>) to ``db``'s transaction; the caller writes the file and commits."""
    count = db.scalar(select(func.count()).select_from(RuleSetVersion)) or 0
    label = f"v{count + 1}"
    rule_set = RuleSet(version=label, rules=rules)  # order kept: the content hash depends on it
    row = RuleSetVersion(
        label=label,
        full_version=rule_set.full_version,
        content=rule_set.model_dump_json(),
        created_by=actor,
        created_at=utcnow(),
        comment=comment,
        rolled_back_from=rolled_back_from,
    )
    db.add(row)
    db.flush()
    return row, rule_set


def _write_and_commit(db: Session, publisher: RulePublisher, rule_set: RuleSet, previous: RuleSet) -> None:
    """Publish what readers pick up, then commit; when publishing fails nothing is committed, when the
    commit fails the previous set is published again."""
    try:
        publisher.publish(rule_set)
    except (BackendError, OSError) as exc:
        db.rollback()
        status = exc.status_code if isinstance(exc, BackendError) else 503
        raise RuleError(status, f"the rule set was not published to {publisher.location}: {exc}") from None
    try:
        db.commit()
    except Exception:
        db.rollback()
        publisher.publish(previous)
        raise


def _with_versions(draft: RuleSet, live: RuleSet) -> list[Rule]:
    """The draft's rules as published: unchanged rules stay as live has them, changed ones get the
    next rule version."""
    live_by_id = {r.id: r for r in live.rules}
    out = []
    for rule in draft.rules:
        before = live_by_id.get(rule.id)
        if before is None:
            out.append(rule)
        elif not _changed_fields(before, rule):
            out.append(before)
        else:
            out.append(rule.model_copy(update={"version": before.version + 1}))
    return out


def activate(
    db: Session, publisher: RulePublisher, actor: str, comment: str = "", base_version_id: int | None = None
) -> dict[str, Any]:
    """Publish the draft as the next live version."""
    with _publish_lock:
        live = live_version(db, publisher)
        if base_version_id is not None and base_version_id != live.id:
            raise RuleError(
                409,
                f"the live set moved to {live.label} since you loaded the page; reload and review the changes again",
            )
        live_set = rule_set_of(live)
        draft = draft_rule_set(db, publisher)
        diff = diff_rules(live_set.rules, draft.rules)
        if diff["identical"]:
            raise RuleError(409, f"nothing to activate: the draft is identical to the live set {live.label}")
        row, published = _publish(db, _with_versions(draft, live_set), actor, comment.strip())
        reset_draft(db, published, row.id)
        audit.record(
            db,
            actor,
            "ruleset.activate",
            row.label,
            before={"label": live.label, "full_version": live.full_version},
            after={"label": row.label, "full_version": row.full_version, "comment": row.comment, "diff": diff},
            commit=False,
        )
        _write_and_commit(db, publisher, published, live_set)
        return {**version_dict(row, published), "diff": diff}


def rollback(db: Session, publisher: RulePublisher, version_id: int, actor: str, comment: str = "") -> dict[str, Any]:
    """Publish an earlier version's content again as the next version; the draft is reset to it."""
    with _publish_lock:
        target = db.get(RuleSetVersion, version_id)
        if target is None:
            raise RuleError(404, f"no rule-set version {version_id}")
        live = live_version(db, publisher)
        live_set, target_set = rule_set_of(live), rule_set_of(target)
        diff = diff_rules(live_set.rules, target_set.rules)
        if target.id == live.id or diff["identical"]:
            raise RuleError(409, f"{target.label} has the content of the live set {live.label}: nothing to roll back")
        note = f"rollback to {target.label}" + (f": {comment.strip()}" if comment.strip() else "")
        row, published = _publish(db, list(target_set.rules), actor, note, rolled_back_from=target.id)
        reset_draft(db, published, row.id)
        audit.record(
            db,
            actor,
            "ruleset.rollback",
            row.label,
            before={"label": live.label, "full_version": live.full_version},
            after={"label": row.label, "full_version": row.full_version, "rolled_back_to": target.label, "diff": diff},
            commit=False,
        )
        _write_and_commit(db, publisher, published, live_set)
        return {**version_dict(row, published), "diff": diff}


def list_versions(db: Session, publisher: RulePublisher, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, each with its diff against the version before it."""
    live = live_version(db, publisher)
    rows = list(db.scalars(select(RuleSetVersion).order_by(RuleSetVersion.id.desc()).limit(limit + 1)))
    sets = [rule_set_of(r) for r in rows]
    labels = {r.id: r.label for r in rows}
    out = []
    for i, row in enumerate(rows[:limit]):
        previous = sets[i + 1].rules if i + 1 < len(sets) else []
        diff = diff_rules(previous, sets[i].rules)
        back = row.rolled_back_from
        back_label = labels.get(back) if back is not None else None
        if not back_label and back:
            back_row = db.get(RuleSetVersion, back)
            back_label = back_row.label if back_row is not None else None
        out.append(
            {
                **version_dict(row, sets[i]),
                "live": row.id == live.id,
                "rolled_back_from_label": back_label,
                "previous_label": rows[i + 1].label if i + 1 < len(rows) else None,
                "diff": diff,
                "changes": diff_summary(diff),
            }
        )
    return out


def get_version(db: Session, version_id: int) -> dict[str, Any]:
    row = db.get(RuleSetVersion, version_id)
    if row is None:
        raise RuleError(404, f"no rule-set version {version_id}")
    rule_set = rule_set_of(row)
    return {**version_dict(row, rule_set), "content": json.loads(rule_set.model_dump_json())}


# ------------------------------------------------------------------------------------------ backtest
def start_backtest(
    db: Session, publisher: RulePublisher, runner: StepExecutor, step: Step, given: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Replay the draft against the live set with the backtest step; the run's ``result`` gets the
    comparison."""
    unknown = sorted(set(given) - set(BACKTEST_PARAMS))
    if unknown:
        raise RuleError(422, f"unknown backtest parameter(s) {', '.join(unknown)}; known: {', '.join(BACKTEST_PARAMS)}")
    try:
        params = step.resolve(given)
    except ValueError as exc:
        raise RuleError(422, str(exc)) from None
    unavailable = runner.unavailable(step)
    if unavailable:
        raise RuleError(409, unavailable)
    live = live_version(db, publisher)
    draft = draft_rule_set(db, publisher)
    diff = diff_rules(rule_set_of(live).rules, draft.rules)
    try:
        candidate = publisher.write_candidate(draft)
    except (BackendError, OSError) as exc:
        status = exc.status_code if isinstance(exc, BackendError) else 503
        raise RuleError(status, f"the candidate rule set could not be handed to the backtest: {exc}") from None
    params["candidate_rules"] = candidate
    try:
        run = runner.start(
            step,
            params,
            started_by=actor,
            note=f"{BACKTEST_NOTE} {draft.full_version} vs {live.label} ({live.full_version})",
        )
    except (AlreadyRunning, BackendError) as exc:
        publisher.discard_candidate(candidate)
        raise RuleError(exc.status_code if isinstance(exc, BackendError) else 409, str(exc)) from None
    audit.record(
        db,
        actor,
        "rule.backtest",
        draft.full_version,
        after={"run_id": run.id, "params": params, "live": live.label, "changes": diff_summary(diff)},
    )
    return backtest_view(run, draft.full_version)


def metric_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The comparison's metrics, highlighted ones first, each with a verdict (better/worse/same)."""
    if not result:
        return []
    by_name = {m["metric"]: m for m in result.get("metrics", [])}
    known = {name for name, *_ in BACKTEST_METRICS}
    rows = []
    for name, label, fmt, better in BACKTEST_METRICS:
        if name in by_name:
            rows.append(_metric_row(by_name[name], label, fmt, better))
    rows += [_metric_row(m, m["metric"], "number", None) for m in result.get("metrics", []) if m["metric"] not in known]
    return rows


def _metric_row(metric: dict[str, Any], label: str, fmt: str, better: str | None) -> dict[str, Any]:
    delta = metric.get("delta")
    if delta is None or abs(delta) < _EPSILON:
        verdict = "same"
    elif better is None:
        verdict = "neutral"
    else:
        verdict = "better" if (delta > 0) == (better == "higher") else "worse"
    return {
        "metric": metric["metric"],
        "label": label,
        "format": fmt,
        "better": better,
        "live": metric.get("live"),
        "candidate": metric.get("candidate"),
        "delta": delta,
        "verdict": verdict,
    }


def _log_tail(path: str, lines: int = 12) -> list[str]:
    log_file = Path(path) if path else None
    if log_file is None or not log_file.exists():
        return []
    with log_file.open("rb") as fh:
        fh.seek(max(log_file.stat().st_size - LOG_TAIL_BYTES, 0))
        return fh.read().decode(errors="replace").splitlines()[-lines:]


def backtest_view(run: JobRun, candidate_full_version: str | None = None) -> dict[str, Any]:
    base = run.as_dict()
    result = base.pop("result")
    result = result or {}
    # the note reads "rules draft <candidate full_version> vs <live label> (<live full_version>)"
    words = (run.note or "").removeprefix(BACKTEST_NOTE).split()
    expected_live = words[3].strip("()") if len(words) > 3 else None
    live_seen = result.get("live_rule_set_version")
    return {
        **base,
        "candidate_full_version": result.get("candidate_rule_set_version")
        or candidate_full_version
        or (words[0] if words else None),
        "live_label": words[2] if len(words) > 2 else None,
        # the job reads the live set from the published file: flag a run that saw another one
        "live_full_version": live_seen,
        "live_matches": None if not live_seen or not expected_live else live_seen == expected_live,
        "rows": result.get("rows"),
        "range_start": result.get("range_start"),
        "range_end": result.get("range_end"),
        "has_result": bool(result),
        "metrics": metric_rows(result),
        "log_tail": _log_tail(run.log_path),
    }


def _is_draft_backtest(run: JobRun) -> bool:
    return run.step == "backtest" and (run.note or "").startswith(BACKTEST_NOTE)


def list_backtests(db: Session, limit: int = 20) -> list[dict[str, Any]]:
    runs = db.scalars(
        select(JobRun)
        .where(JobRun.step == "backtest", JobRun.note.startswith(BACKTEST_NOTE))
        .order_by(JobRun.id.desc())
        .limit(limit)
    )
    return [backtest_view(run) for run in runs]


def get_backtest(db: Session, run_id: int) -> dict[str, Any]:
    run = db.get(JobRun, run_id)
    if run is None or not _is_draft_backtest(run):
        raise RuleError(404, f"no backtest of a rules draft with run id {run_id}")
    return backtest_view(run)


# ------------------------------------------------------------------------------------------ help
def language_help() -> dict[str, Any]:
    """Fields, types and actions for the editor's help and autocomplete; the backtest metrics shown."""
    return {
        "fields": [
            {
                "name": name,
                "kind": ft.kind,
                "nullable": ft.nullable,
                "source": ft.source,
                "vocabulary": list(ft.vocabulary) if ft.vocabulary else None,
            }
            for name, ft in FIELDS.items()
        ],
        "types": list(RULE_TYPES),
        "actions_help": ACTIONS_HELP,
        "action_examples": ACTION_EXAMPLES,
        "keywords": ["AND", "OR", "NOT", "IN", "NOT IN", "BETWEEN", "IS NULL", "IS NOT NULL", "TRUE", "FALSE"],
        "metrics": [
            {"metric": m, "label": label, "format": fmt, "better": better} for m, label, fmt, better in BACKTEST_METRICS
        ],
    }
