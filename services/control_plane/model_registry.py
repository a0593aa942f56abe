"""The four decision models in the MLflow registry: versions, training metrics, aliases; move aliases.

The registry contract is ``payments_core.models``: four registered models (``registered_name``), the
``champion`` alias decides, the optional ``challenger`` is scored and logged. Promoting or rolling
back is moving an alias; the scoring API and the stream processor poll the aliases and load the new
version within their refresh interval, without a restart.

MLflow calls are blocking and slow-ish (a sqlite registry, or HTTP): the API calls these methods from
sync endpoints (FastAPI's thread pool) and the overview is cached for a few seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from payments_core.models import ALIASES, CHALLENGER, CHAMPION, FEATURES_SHA256, MODEL_KINDS, registered_name

if TYPE_CHECKING:
    from mlflow import MlflowClient

# How long the versions overview is reused (the page polls; mutations invalidate it at once).
OVERVIEW_TTL_S = 3.0
# What the page says about when the running services see an alias change: the stream processor's
# PA_STREAM_ENGINE_REFRESH_SECONDS (10 s) and the scoring API's PA_REFRESH_SECONDS (15 s) by default.
PICKUP_NOTE = (
    "Running services pick up an alias change within their refresh interval (the scoring API "
    "checks every 15 s, the stream processor every 10 s by default), without a restart."
)
# Version metrics shown first on the page (the training job logs ``<kind>.<metric>`` on the model's run).
HEADLINE_METRICS = ("auc", "precision", "recall", "brier", "ece", "baseline.auc")


class RegistryError(Exception):
    """A registry problem the API reports with ``status_code`` and this message."""

    status_code = 500


class RegistryUnavailable(RegistryError):
    status_code = 503


class UnknownModel(RegistryError):
    status_code = 404


class InvalidVersion(RegistryError):
    status_code = 422


def _iso_ms(epoch_ms: int | None) -> str | None:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat() if epoch_ms else None


def redact_uri(uri: str) -> str:
    """The registry URI without credentials (shown on the page)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        return urlunsplit(
            (
                parts.scheme,
                f"***@{host}" + (f":{parts.port}" if parts.port else ""),
                parts.path,
                parts.query,
                parts.fragment,
            )
        )
    return uri


class ModelRegistry:
    """One MLflow client (created on first use) and a short-lived cache of the overview."""

    def __init__(
        self, tracking_uri: str, catalog: str | None = None, schema: str | None = None, registry_uri: str | None = None
    ):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.catalog, self.schema = catalog, schema
        self._client: MlflowClient | None = None
        self._lock = threading.RLock()
        self._overview: tuple[float, dict] | None = None
        self._runs: dict[str, tuple[dict[str, float], dict[str, str]]] = {}  # run id -> (metrics, params)

    @property
    def unity_catalog(self) -> bool:
        return self.registry_uri.startswith("databricks-uc")

    # ------------------------------------------------------------------------------ names and client
    def name(self, kind: str) -> str:
        if kind not in MODEL_KINDS:
            raise UnknownModel(f"unknown model {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
        return registered_name(kind, self.catalog, self.schema)

    def _sqlite_path(self) -> Path | None:
        return (
            Path(self.registry_uri.removeprefix("sqlite:///")) if self.registry_uri.startswith("sqlite:///") else None
        )

    def exists(self) -> bool:
        """False for a local sqlite registry not created yet (opening it would create an empty one)."""
        path = self._sqlite_path()
        return path is None or path.exists()

    def _probe(self) -> None:
        """An HTTP tracking server that does not answer fails fast (MLflow itself retries for minutes)."""
        if not self.registry_uri.startswith(("http://", "https://")):
            return
        try:
            httpx.get(self.registry_uri.rstrip("/") + "/health", timeout=2.0)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"model registry {redact_uri(self.registry_uri)} unreachable: {exc}") from exc

    def client(self):
        with self._lock:
            if self._client is None:
                self._probe()
                # imported here: mlflow takes seconds to import and only this page needs it
                from mlflow import MlflowClient  # noqa: PLC0415

                self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            else:
                self._probe()
            return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        """Run an MLflow call; a missing resource returns None, any other failure is 503."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 - mlflow: seconds to import (see client)

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise RegistryUnavailable(f"model registry error while {what}: {exc.message}") from exc
        except RegistryError:
            raise
        except Exception as exc:  # connection refused, a locked or corrupt sqlite file...
            raise RegistryUnavailable(
                f"model registry {redact_uri(self.registry_uri)} unavailable while {what}: {type(exc).__name__}: {exc}"
            ) from exc

    # ---------------------------------------------------------------------------------- reading
    def invalidate(self) -> None:
        with self._lock:
            self._overview = None

    def overview(self) -> dict[str, Any]:
        """Every model kind with its versions (newest first), metrics and aliases (cached a few seconds)."""
        with self._lock:
            if self._overview and time.monotonic() - self._overview[0] < OVERVIEW_TTL_S:
                return self._overview[1]
        if not self.exists():
            result: dict[str, Any] = {
                "registry": redact_uri(self.registry_uri),
                "note": PICKUP_NOTE,
                "message": "no model registry yet: run the Train step on /setup",
                "models": [self._empty(kind) for kind in MODEL_KINDS],
            }
        else:
            client = self.client()
            result = {
                "registry": redact_uri(self.registry_uri),
                "note": PICKUP_NOTE,
                "message": None,
                "models": [self._model(client, kind) for kind in MODEL_KINDS],
            }
            if not any(m["registered"] for m in result["models"]):
                result["message"] = "no model registered yet: run the Train step on /setup"
        with self._lock:
            self._overview = (time.monotonic(), result)
        return result

    def _empty(self, kind: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "name": self.name(kind),
            "registered": False,
            "champion": None,
            "challenger": None,
            "versions": [],
        }

    def _model(self, client, kind: str) -> dict[str, Any]:
        name = self.name(kind)
        registered = self._call(f"reading {name}", client.get_registered_model, name)
        if registered is None:
            return self._empty(kind)
        aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
        found = self._call(f"listing the versions of {name}", client.search_model_versions, f"name='{name}'") or []
        if self.unity_catalog:  # Unity Catalog's search answers without tags: read each version
            found = [
                self._call(f"reading {name} v{mv.version}", client.get_model_version, name, str(mv.version)) or mv
                for mv in found
            ]
        versions = sorted(found, key=lambda mv: int(mv.version), reverse=True)
        return {
            "kind": kind,
            "name": name,
            "registered": True,
            "champion": aliases.get(CHAMPION),
            "challenger": aliases.get(CHALLENGER),
            "description": registered.description or "",
            "versions": [self._version(client, kind, mv, aliases) for mv in versions],
        }

    def _version(self, client, kind: str, mv, aliases: dict[str, str]) -> dict[str, Any]:
        tags = dict(mv.tags or {})
        metrics, params = self._run_data(client, mv.run_id, kind)
        threshold = tags.get("pa.threshold")
        return {
            "version": str(mv.version),
            "created_at": _iso_ms(mv.creation_timestamp),
            "status": mv.status,
            "run_id": mv.run_id,
            "description": mv.description or "",
            "tags": tags,
            "threshold": float(threshold) if threshold is not None else None,
            "estimator": params.get("estimator") or (mv.description or "").split(";")[0] or None,
            "fast_path": tags.get("pa.fast_path"),
            "features_match": tags.get("pa.features_sha256") == FEATURES_SHA256,
            "metrics": metrics,
            "headline_metrics": {k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
            "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
        }

    def _run_data(self, client, run_id: str | None, kind: str) -> tuple[dict[str, float], dict[str, str]]:
        """The run's metrics and params of ``kind`` (logged as ``<kind>.<name>``), prefix removed.
        A finished training run does not change: kept for the life of the process."""
        if not run_id:
            return {}, {}
        if run_id not in self._runs:
            run = self._call(f"reading run {run_id}", client.get_run, run_id)
            self._runs[run_id] = (dict(run.data.metrics), dict(run.data.params)) if run else ({}, {})
        metrics, params = self._runs[run_id]
        prefix = f"{kind}."
        return (
            {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)},
            {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)},
        )

    # ---------------------------------------------------------------------------------- changes
    def _require_model(self, kind: str):
        name = self.name(kind)
        if not self.exists():
            raise UnknownModel(f"no versions of {name} registered yet: run the Train step on /setup")
        client = self.client()
        registered = self._call(f"reading {name}", client.get_registered_model, name)
        if registered is None:
            raise UnknownModel(f"no versions of {name} registered yet: run the Train step on /setup")
        return client, name, {a: str(v) for a, v in (registered.aliases or {}).items()}

    def aliases(self, kind: str) -> dict[str, str]:
        """alias -> version of ``kind``, read now (not cached)."""
        return self._require_model(kind)[2]

    def set_alias(self, kind: str, alias: str, version: str) -> tuple[str | None, str]:
        """Point ``alias`` of ``kind`` at ``version``. Returns (version before or None, version after)."""
        if alias not in ALIASES:
            raise InvalidVersion(f"unknown alias {alias!r}: expected one of {', '.join(ALIASES)}")
        with self._lock:
            client, name, aliases = self._require_model(kind)
            version = str(version)
            mv = self._call(f"reading {name} v{version}", client.get_model_version, name, version)
            if mv is None:
                found = (
                    self._call(f"listing the versions of {name}", client.search_model_versions, f"name='{name}'") or []
                )
                known = ", ".join(sorted((str(v.version) for v in found), key=int)) or "none"
                raise InvalidVersion(f"{name} has no version {version} (registered versions: {known})")
            if mv.status != "READY":
                raise InvalidVersion(f"{name} v{version} is {mv.status}, not READY: it cannot be promoted")
            if (mv.tags or {}).get("pa.features_sha256") != FEATURES_SHA256:
                raise InvalidVersion(
                    f"{name} v{version} was trained on another feature list than this decision "
                    "core's MODEL_FEATURES: the scoring services would refuse to load it"
                )
            before = aliases.get(alias)
            if before != version:
                self._call(f"setting {name}@{alias}", client.set_registered_model_alias, name, alias, version)
            self._overview = None
            return before, version

    def delete_alias(self, kind: str, alias: str) -> str | None:
        """Remove ``alias`` of ``kind``; returns the version it pointed at (None: it was not set)."""
        with self._lock:
            client, name, aliases = self._require_model(kind)
            before = aliases.get(alias)
            if before is not None:
                self._call(f"deleting {name}@{alias}", client.delete_registered_model_alias, name, alias)
            self._overview = None
            return before
