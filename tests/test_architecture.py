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
            others = {n for n in _imports(path)
                      if n.startswith("services.") and n.split(".")[1] != service}
            assert not others, f"{path.relative_to(REPO)} imports another service: {sorted(others)}"
