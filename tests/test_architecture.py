"""Dependency rules: the core imports no service and no pyspark; services never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_core_imports_no_service_and_no_pyspark():
    files = _python_files("payments_core")
    assert files
    for path in files:
        bad = {n for n in _imports(path) if n.split(".")[0] in {"pyspark", "services", "spark", "launcher", "delta"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_services_never_import_each_other():
    services = [p.name for p in (REPO / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert "control_plane" in services
    for service in services:
        for path in _python_files(f"services/{service}"):
            others = {n for n in _imports(path) if n.startswith("services.") and n.split(".")[1] != service}
            assert not others, f"{path.relative_to(REPO)} imports another service: {sorted(others)}"


PROJECT = ("payments_core", "services", "spark", "launcher", "bench")


def test_the_scoring_api_never_imports_spark_and_spark_never_imports_the_launcher():
    for folder, forbidden in (("services/scoring_api", "spark"), ("spark", "launcher")):
        for path in _python_files(folder):
            bad = {n for n in _imports(path) if n.split(".")[0] == forbidden}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_no_module_imports_a_private_name_from_another_module():
    """``from x import _name`` reaches into another module's internals; make the name public instead."""
    offenders = []
    for folder in PROJECT:
        for path in _python_files(folder):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    if private:
                        offenders.append(f"{path.relative_to(REPO)}: from {node.module} import {', '.join(private)}")
    assert not offenders, "\n".join(offenders)
