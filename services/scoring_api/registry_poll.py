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
import os
import threading
import time

from payments_core.models import ModelSource

_SOURCE: ModelSource | None = None


def alias_versions(
    tracking_uri: str | None, catalog: str | None, schema: str | None
) -> dict[tuple[str, str], str | None]:
    """Runs in the helper process (the registry client stays open between calls)."""
    global _SOURCE
    if _SOURCE is None or (_SOURCE.tracking_uri, _SOURCE.catalog, _SOURCE.schema) != (tracking_uri, catalog, schema):
        _SOURCE = ModelSource(tracking_uri, catalog, schema)
    return _SOURCE.alias_versions()


def _exit_with_parent() -> None:
    """Initializer of the helper process: exit when the API worker that started it is gone (even
    if it was killed and could not shut the pool down)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def start_poller(
    tracking_uri: str | None, catalog: str | None, schema: str | None
) -> concurrent.futures.ProcessPoolExecutor:
    """Start the helper process and make it import MLflow and ask once now, at startup: spawning
    and importing later, mid-traffic, costs seconds of CPU next to the serving worker."""
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent
    )
    pool.submit(alias_versions, tracking_uri, catalog, schema)
    return pool
