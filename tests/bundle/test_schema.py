"""Every bundle file, and the merged bundle, against the official Databricks bundle JSON schema.

The schema's patterns use ``\\p{L}`` / ``\\p{N}``, which Python's ``re`` does not know: jsonschema-rs
(Rust regex) evaluates them as written. Every typed value may also be a ``${...}`` reference, which the
schema encodes as a ``oneOf`` of the type and reference patterns per namespace (resources, bundle,
workspace, artifacts, var): a misspelt namespace (``${vars.catalog}``) fails the schema too.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from tests.bundle.bundle_files import BUNDLE_DIR, bundle_files, load, merged


@pytest.fixture(scope="module")
def validator(bundle_schema: dict) -> Any:
    return jsonschema_rs.validator_for(bundle_schema)


def leaf_errors(error: Any) -> list[str]:
    """The innermost reasons of an error. A failed ``oneOf`` (type or reference) reports only itself:
    descend into the branch that got furthest, which is where the real mistake is."""
    context = getattr(error.kind, "context", None)
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.OneOfNotValid) and context:
        deepest = max(context, key=lambda errs: max((len(e.instance_path) for e in errs), default=-1))
        return [reason for e in deepest for reason in leaf_errors(e)]
    path = "/".join(map(str, error.instance_path)) or "(root)"
    return [f"{path}: {error.message[:300]}"]


def problems(validator: Any, document: Any) -> list[str]:
    return [reason for error in validator.iter_errors(document) for reason in leaf_errors(error)]


@pytest.mark.parametrize("path", bundle_files(), ids=lambda p: p.relative_to(BUNDLE_DIR).as_posix())
def test_each_bundle_file_follows_the_schema(validator: Any, path) -> None:
    assert problems(validator, load(path)) == []


def test_the_merged_bundle_follows_the_schema(validator: Any) -> None:
    bundle = merged()
    assert problems(validator, bundle) == []
    assert len(bundle_files()) > 20, "include: resources/*.yml finds the resource files"


def test_every_target_with_its_overrides_follows_the_schema(validator: Any) -> None:
    bundle = merged()
    for name, target in bundle["targets"].items():
        resolved = {**bundle, **{k: v for k, v in target.items() if k in ("workspace", "run_as", "presets")}}
        assert problems(validator, resolved) == [], name


def test_the_validator_rejects_what_the_cli_would(validator: Any) -> None:
    """The checks above can fail: a misspelt key, an unknown enum value, a reference to an unknown
    namespace, a wrong type; and a ``\\p{L}`` reference pattern is accepted where a number goes."""
    job = {"name": "j", "tasks": [{"task_key": "t", "spark_python_task": {"python_file": "x.py"}}]}
    assert problems(validator, {"resources": {"jobs": {"j": job}}}) == []
    assert problems(validator, {"resources": {"jobs": {"j": {**job, "max_concurrent_runs": "${var.runs}"}}}}) == []
    bad = [
        {"resources": {"jobs": {"j": {**job, "max_concurent_runs": 1}}}},
        {"resources": {"jobs": {"j": {**job, "max_concurrent_runs": "${vars.runs}"}}}},
        {"resources": {"jobs": {"j": {**job, "max_concurrent_runs": "one"}}}},
        {"resources": {"apps": {"a": {"name": "a", "compute_size": "HUGE"}}}},
        {"bundle": {"databricks_cli_version": 1}},
    ]
    for document in bad:
        found = problems(validator, document)
        assert found, document
        assert all(":" in reason for reason in found)
