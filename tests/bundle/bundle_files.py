"""The bundle as the tests read it: its files, the merged configuration, every value with its path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_DIR = REPO_ROOT / "bundle"
BUNDLE_FILE = BUNDLE_DIR / "databricks.yml"
RESOURCES_DIR = BUNDLE_DIR / "resources"
REFERENCE = re.compile(r"\$\{([^}]+)\}")
PER_WORKSPACE = "Per workspace:"  # a variable's description mark: set for the workspace, not per target


@dataclass(frozen=True)
class Value:
    """A scalar of the configuration, where it comes from and where it sits."""

    file: Path
    path: tuple[str | int, ...]
    value: Any

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO_ROOT)}:{'.'.join(map(str, self.path))}"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def bundle_files() -> list[Path]:
    """databricks.yml and every file its ``include`` globs name."""
    root = load(BUNDLE_FILE)
    files = [BUNDLE_FILE]
    for pattern in root.get("include", []):
        files += sorted(BUNDLE_DIR.glob(pattern))
    return files


def merged() -> dict[str, Any]:
    """databricks.yml with the resources of the included files merged in (a key defined twice fails)."""
    root = load(BUNDLE_FILE)
    resources: dict[str, dict[str, Any]] = {k: dict(v) for k, v in root.get("resources", {}).items()}
    for file in bundle_files()[1:]:
        doc = load(file)
        extra = set(doc) - {"resources"}
        assert not extra, f"{file.name}: a resource file holds resources only, not {sorted(extra)}"
        for kind, items in doc["resources"].items():
            for key, body in items.items():
                assert key not in resources.get(kind, {}), f"resources.{kind}.{key} is defined twice ({file.name})"
                resources.setdefault(kind, {})[key] = body
    return {**root, "resources": resources}


def resource_files() -> dict[tuple[str, str], Path]:
    """(kind, key) -> the file that defines it."""
    out = {}
    for file in bundle_files()[1:]:
        for kind, items in load(file)["resources"].items():
            for key in items:
                out[(kind, key)] = file
    return out


def walk(node: Any, file: Path, path: tuple[str | int, ...] = ()) -> Iterator[Value]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, file, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, file, (*path, i))
    else:
        yield Value(file, path, node)


def all_values() -> Iterator[Value]:
    for file in bundle_files():
        yield from walk(load(file), file)


def references(text: Any) -> list[str]:
    return REFERENCE.findall(text) if isinstance(text, str) else []
