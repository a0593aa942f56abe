"""Rules as data: the ``Rule`` record, actions, the versioned ``RuleSet`` and where it is read from.

A rule set is JSON ``{"version": "...", "rules": [Rule, ...]}``. ``RuleSet.version`` is the
declared label plus a short content hash (``starter-1+3f9c2a1b``), so two different contents never
share a version and ``decision_id`` changes when any rule changes.

Actions by rule type:

* ``risk`` / ``authentication``: an outcome, ``approve`` (allow-list), ``challenge_3ds``, ``review``
  or ``decline``;
* ``routing``: ``route:<payment_solution>``;
* ``retry``: ``retry:<seconds>`` or ``no_retry`` (applies to declines).

Evaluation order is ``(priority, id)``: lower priority numbers first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from payments_core.contract.events import DecisionOutcome, PaymentSolution, enum_values
from payments_core.rules.language import Condition, RuleSyntaxError, compile_condition

log = logging.getLogger(__name__)

RuleType = Literal["authentication", "risk", "retry", "routing"]
OUTCOMES: tuple[str, ...] = enum_values(DecisionOutcome)
ROUTES: tuple[str, ...] = enum_values(PaymentSolution)
_RETRY_RE = re.compile(r"^retry:(\d{1,7})$")
ACTIONS_HELP = (
    "approve | challenge_3ds | review | decline (risk, authentication); route:<solution> (routing); "
    "retry:<seconds> | no_retry (retry)"
)


@dataclass(frozen=True)
class Action:
    kind: Literal["outcome", "route", "retry"]
    value: str | int | None  # outcome name, route name, retry seconds (None = no retry)


def parse_action(action: str) -> Action:
    a = action.strip()
    if a in OUTCOMES:
        return Action("outcome", a)
    if a.startswith("route:"):
        route = a.split(":", 1)[1]
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(ROUTES)}")
        return Action("route", route)
    if a == "no_retry":
        return Action("retry", None)
    m = _RETRY_RE.match(a)
    if m:
        return Action("retry", int(m.group(1)))
    raise ValueError(f"unknown action {action!r}; expected {ACTIONS_HELP}")


_ACTION_KINDS: dict[str, str] = {"risk": "outcome", "authentication": "outcome", "routing": "route", "retry": "retry"}


class Rule(BaseModel):
    """One rule. Creating a ``Rule`` validates (and compiles) its condition and action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["R001"])
    name: str = Field(min_length=1, max_length=200)
    type: RuleType
    condition: str = Field(
        min_length=1, max_length=4000, examples=["fraud_score >= 0.9 AND merchant_segment IN ('Gaming', 'Digital')"]
    )
    action: str = Field(examples=["decline", "route:network_token", "retry:3600"])
    priority: int = Field(100, ge=0, le=1_000_000, description="Lower runs first")
    active: bool = True
    shadow: bool = Field(False, description="Evaluated and logged, never changes the decision")
    version: int = Field(1, ge=1)
    description: str = ""
    updated_by: str = "system"
    updated_at: datetime | None = None

    @field_validator("condition")
    @classmethod
    def _valid_condition(cls, value: str) -> str:
        try:
            compile_condition(value)
        except RuleSyntaxError as exc:
            raise ValueError(exc.describe()) from None
        return value

    @model_validator(mode="after")
    def _valid_action(self) -> Rule:
        act = parse_action(self.action)
        if act.kind != _ACTION_KINDS[self.type]:
            raise ValueError(f"action {self.action!r} does not fit a {self.type} rule; expected {ACTIONS_HELP}")
        return self

    @property
    def compiled(self) -> Condition:
        return compile_condition(self.condition)

    @property
    def parsed_action(self) -> Action:
        return parse_action(self.action)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field("unversioned", min_length=1, max_length=100, description="Declared label")
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return rules

    def content_hash(self) -> str:
        body = [r.model_dump(mode="json", exclude={"updated_by", "updated_at", "description"}) for r in self.rules]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def full_version(self) -> str:
        """What decisions record as ``rule_set_version``."""
        return f"{self.version}+{self.content_hash()}"

    def ordered(self) -> list[Rule]:
        return sorted(self.rules, key=lambda r: (r.priority, r.id))

    @classmethod
    def from_json(cls, text: str | bytes) -> RuleSet:
        return cls.model_validate_json(text)


def starter_rule_set() -> RuleSet:
    """The starter rules shipped in the package (seeded into ``approval_rules`` by bootstrap)."""
    text = resources.files("payments_core.rules").joinpath("starter_rules.json").read_text()
    return RuleSet.from_json(text)


RULESET_NAME = "ruleset.json"
VOLUMES = Path("/Volumes")  # where Databricks clusters mount Unity Catalog volumes


def ruleset_file(data_dir: str | os.PathLike[str]) -> Path:
    """``<data_dir>/rules/ruleset.json``: where the control plane publishes the live rule set."""
    return Path(data_dir) / "rules" / RULESET_NAME


def ruleset_path(
    data_dir: str | os.PathLike[str] | None = None, rules_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The published rule set readers follow: ``<rules_dir>/ruleset.json`` when a rules directory is
    configured (``PA_RULES_VOLUME_PATH``: a Unity Catalog volume folder on Databricks, which clusters
    read as a file under ``/Volumes``), else ``ruleset_file`` of ``data_dir``. Without arguments the
    same from the environment (``$PA_RULES_VOLUME_PATH``, else ``$PA_DATA_DIR``); None when none is set."""
    if rules_dir:
        return Path(rules_dir) / RULESET_NAME
    if data_dir:
        return ruleset_file(data_dir)
    env_rules = os.environ.get("PA_RULES_VOLUME_PATH")
    if env_rules:
        return Path(env_rules) / RULESET_NAME
    base = os.environ.get("PA_DATA_DIR")
    return ruleset_file(base) if base else None


def write_ruleset(rule_set: RuleSet, path: str | os.PathLike[str]) -> None:
    """Publish ``rule_set`` atomically (write a temp file, rename): readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(rule_set.model_dump_json(indent=2))
    os.replace(tmp, path)


class VolumeFile:
    """A file of a Unity Catalog volume read with the Files API, for a process where ``/Volumes`` is not
    mounted (a Databricks App; clusters and jobs read the path as a file). databricks-sdk's default
    authentication chain; the client is made on first use."""

    def __init__(self, path: Path):
        self.path = path.as_posix()
        self._client: Any = None

    @staticmethod
    def needed(path: Path | None) -> bool:
        return path is not None and path.parts[:2] == ("/", "Volumes") and not VOLUMES.is_dir()

    def _files(self) -> Any:
        if self._client is None:
            # only a process reading a volume without its mount loads databricks-sdk (seconds to import)
            from databricks.sdk import WorkspaceClient  # noqa: PLC0415

            self._client = WorkspaceClient()
        return self._client.files

    def stamp(self) -> tuple[Any, ...] | None:
        """(last modified, length) of the file; None when it does not exist."""
        from databricks.sdk.errors import NotFound  # noqa: PLC0415 - loaded with the client above

        try:
            meta = self._files().get_metadata(self.path)
        except NotFound:
            return None
        return ("files-api", meta.last_modified, meta.content_length)

    def read(self) -> bytes:
        contents = self._files().download(self.path).contents
        return contents.read() if contents is not None else b""


class RuleSource:
    """The live rule set: ``path`` when it exists and is valid, else the starter set.

    ``current()`` re-reads the file only when its (mtime, size, inode) changed, so callers may ask
    on every batch. An invalid file is logged and ignored (the previous rule set stays live). A path
    in a Unity Catalog volume that is not mounted here is followed through the Files API
    (``VolumeFile``: last modified and length instead of the stat), and a workspace that does not
    answer keeps the rule set in force.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else None
        self._volume = VolumeFile(self.path) if self.path is not None and VolumeFile.needed(self.path) else None
        self._stamp: tuple[Any, ...] | None = None
        self._rules: RuleSet = starter_rule_set()
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.current()

    @classmethod
    def from_env(cls) -> RuleSource:
        return cls(ruleset_path())

    def _file_stamp(self) -> tuple[Any, ...] | None:
        if self.path is None:
            return None
        if self._volume is not None:
            try:
                return self._volume.stamp()
            except Exception as exc:  # the workspace unreachable: the rule set in force stays, checked again later
                self.last_error = f"{self.path}: {exc}"
                log.warning("rule set not checked: %s", self.last_error)
                return self._stamp
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> RuleSet:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._rules
        with self._lock:
            if stamp == self._stamp:
                return self._rules
            if stamp is None:
                self._rules = starter_rule_set()
            else:
                try:
                    content = self._volume.read() if self._volume else self.path.read_bytes()  # type: ignore[union-attr]
                    self._rules = RuleSet.from_json(content)
                    self.last_error = None
                except Exception as exc:
                    self.last_error = f"{self.path}: {exc}"
                    log.error("invalid rule set ignored: %s", self.last_error)
            self._stamp = stamp
            return self._rules
