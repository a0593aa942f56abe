"""Fixtures of the bundle tests. ``--bundle-schema PATH`` (declared in tests/conftest.py so ``pytest tests``
accepts it; default ``$PA_BUNDLE_SCHEMA``) is the official
Databricks bundle JSON schema every bundle file is validated against (CI passes
``../shared/reference/databricks-bundle-schema.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SCHEMA_ENV = "PA_BUNDLE_SCHEMA"


@pytest.fixture(scope="session")
def bundle_schema(request: pytest.FixtureRequest) -> dict:
    given = request.config.getoption("--bundle-schema", default=None) or os.environ.get(SCHEMA_ENV)
    if not given:
        pytest.fail(
            f"no bundle schema: pass --bundle-schema PATH or set {SCHEMA_ENV} (CI uses "
            "../shared/reference/databricks-bundle-schema.json, the schema the Databricks CLI publishes: "
            "`databricks bundle schema`)",
            pytrace=False,
        )
    path = Path(given)
    if not path.is_absolute() and not path.exists():
        path = request.config.rootpath / path
    if not path.is_file():
        pytest.fail(
            f"bundle schema {given!r} not found (cwd {Path.cwd()}, rootdir {request.config.rootpath})", pytrace=False
        )
    return json.loads(path.read_text())
