"""Registry polling off the serving process.

Asking the model registry where the ``champion``/``challenger`` aliases point takes eight registry
lookups (~13 ms of Python through MLflow and SQLAlchemy with the local sqlite registry). Done in a
thread of an API worker, that holds the GIL and shows up as a latency spike every refresh. So each
worker asks a small helper process instead and only reloads models (in a thread, rare) when an
alias really moved.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing

from payments_core.models import ModelSource

_SOURCE: ModelSource | None = None


def alias_versions(tracking_uri: str, catalog: str | None, schema: str | None) -> dict[tuple[str, str], str | None]:
    """Runs in the helper process (the registry client stays open between calls)."""
    global _SOURCE
    if _SOURCE is None or (_SOURCE.tracking_uri, _SOURCE.catalog, _SOURCE.schema) != (tracking_uri, catalog, schema):
        _SOURCE = ModelSource(tracking_uri, catalog, schema)
    return _SOURCE.alias_versions()


def start_poller() -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
