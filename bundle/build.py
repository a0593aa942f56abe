"""Stage what a deploy uploads: ``python -m bundle.build`` (``make bundle-build``, run by ``make deploy``
and by ``databricks bundle deploy`` through the bundle's artifacts build).

* ``bundle/apps/<app>/``: each Databricks App's source folder: the repository packages the app imports
  (found by following its imports), the front-end assets ``make web`` built (control plane), and a
  ``requirements.txt`` pinned from ``requirements.lock``.
* ``bundle/.build/requirements/{jobs,pipeline}.txt``: the pins the job tasks and the ETL pipeline
  install; Spark, Delta, pandas, NumPy and Arrow are left to the Databricks runtime.

Requirements are derived, never written by hand: the third-party modules the staged code imports are
mapped to their distributions, and those plus everything they need (the ``# via`` graph of the lock
file) are pinned at the lock's versions. A module the lock does not know stops the build, naming the
file that imports it. Standard library only: this runs before the project's virtual environment exists.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = REPO_ROOT / "bundle"
APPS_DIR = BUNDLE_DIR / "apps"
REQUIREMENTS_DIR = BUNDLE_DIR / ".build" / "requirements"
LOCK_FILE = REPO_ROOT / "requirements.lock"
STAGED_README = "README.md"  # the one committed file of an app folder (it explains the folder)

FIRST_PARTY = ("payments_core", "services", "spark", "dashboards", "agents", "launcher", "bench", "bundle")
# Packages of independent parts: a unit is one of their subpackages, not the whole top-level package
# (the scoring API does not carry the control plane, the pipeline does not carry the training code).
SPLIT_PACKAGES = ("services", "spark", "bundle")
# Import names whose distribution is named differently; any other import name is its distribution.
DISTRIBUTION_OF = {
    "argon2": "argon2-cffi",
    "confluent_kafka": "confluent-kafka",
    "databricks": "databricks-sdk",
    "dateutil": "python-dateutil",
    "delta": "delta-spark",
    "faust": "faust-streaming",
    "google": "protobuf",
    "jsonschema_rs": "jsonschema-rs",
    "multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
    "pydantic_core": "pydantic-core",
    "pydantic_settings": "pydantic-settings",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
}
# What every Databricks runtime (clusters, serverless, pipelines) brings: pinning the local versions
# over them would replace the runtime's own Spark or break the libraries built against its NumPy.
RUNTIME_PROVIDED = frozenset({"pyspark", "delta-spark", "py4j", "pandas", "numpy", "pyarrow"})
IGNORED_NAMES = ("__pycache__", "*.pyc", "node_modules", ".pytest_cache")


def report(line: str, stream: TextIO | None = None) -> None:
    """One line of a bundle command's output (command-line programs: not through logging)."""
    (stream or sys.stdout).write(f"{line}\n")
    (stream or sys.stdout).flush()


class BuildError(RuntimeError):
    """Something the deploy cannot upload as it is; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """One thing that installs requirements: an app (staged into its own folder) or the jobs/pipeline."""

    name: str
    entry_units: tuple[str, ...]  # repository paths whose code runs there (followed through imports)
    # Distributions loaded without a static import (a SQLAlchemy dialect, FastAPI's form parser...)
    extra_roots: tuple[str, ...] = ()
    excluded: frozenset[str] = frozenset()
    required_files: tuple[str, ...] = ()  # generated files the target serves (e.g. `make web`'s output)


CONTROL_PLANE = Target(
    "control_plane",
    ("services/control_plane",),
    extra_roots=(
        "uvicorn",  # the server (with its [standard] extras: uvloop, httptools, websockets)
        "python-multipart",  # FastAPI's form parser (sign-in, rule forms)
        "jinja2",  # Starlette's templates import it lazily
        "itsdangerous",  # signed session cookies
        "psycopg",  # SQLAlchemy's postgresql+psycopg dialect: the Lakebase state database
        "databricks-sdk",  # the Databricks backend (Jobs, Pipelines, Unity Catalog, SQL warehouse)
    ),
    required_files=(
        "services/control_plane/web/dist/echarts.min.js",
        "services/control_plane/web/dist/world-countries.geo.json",
    ),
)
SCORING_API = Target(
    "scoring_api",
    ("services/scoring_api",),
    extra_roots=(
        "uvicorn",
        "hiredis",  # redis-py's C reply parser, used when installed (the API's hot path)
        "databricks-sdk",  # MLflow's Unity Catalog registry client authenticates through it
    ),
)
APPS = (CONTROL_PLANE, SCORING_API)
JOBS = Target(
    "jobs",
    ("spark/jobs", "services/simulator", "services/stream_processor", "bundle/tasks"),
    extra_roots=("databricks-sdk",),
    excluded=RUNTIME_PROVIDED,
)
PIPELINE = Target("pipeline", ("spark/pipelines",), excluded=RUNTIME_PROVIDED)
REQUIREMENT_SETS = (JOBS, PIPELINE)


# ------------------------------------------------------------------------------------- lock file
@dataclass(frozen=True)
class Pin:
    name: str  # normalized distribution name
    line: str  # the lock's requirement line, e.g. "fastapi==0.165.0"
    needed_by: frozenset[str]  # distributions whose requirements bring it in (the "# via" lines)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path = LOCK_FILE) -> dict[str, Pin]:
    """The pins of a ``uv pip compile`` lock file with their ``# via`` parents."""
    pins: dict[str, Pin] = {}
    name, line, via = None, "", set()

    def flush() -> None:
        if name is not None:
            pins[name] = Pin(name, line, frozenset(via))

    for raw in path.read_text().splitlines():
        text = raw.strip()
        if not text:
            continue
        if not raw.startswith((" ", "#")):
            flush()
            line = text.split(";")[0].strip()
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)$", line)
            if not match:
                raise BuildError(f"{path.name}: {raw!r} is not an exact pin (name==version)")
            name, line, via = normalize(match.group(1)), f"{match.group(1)}=={match.group(3)}", set()
            continue
        comment = text.lstrip("#").strip()
        comment = comment.removeprefix("via").strip()
        if comment and "(pyproject.toml)" not in comment:
            via.add(normalize(comment.split()[0]))
    flush()
    return pins


def closure(roots: Iterable[str], pins: dict[str, Pin], excluded: frozenset[str] = frozenset()) -> set[str]:
    """``roots`` and everything they need according to the lock, without the excluded ones (and what
    only they bring in)."""
    needs: dict[str, set[str]] = {}
    for pin in pins.values():
        for parent in pin.needed_by:
            needs.setdefault(parent, set()).add(pin.name)
    out: set[str] = set()
    todo = [normalize(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in out or name in excluded:
            continue
        if name not in pins:
            raise BuildError(f"{name} is not in {LOCK_FILE.name}: add it to pyproject.toml and run `make lock`")
        out.add(name)
        todo.extend(needs.get(name, ()))
    return out


# ----------------------------------------------------------------------------------------- imports
@dataclass
class CodeScan:
    modules: set[str] = field(default_factory=set)  # first-party files that run (repository paths)
    imports: dict[str, set[str]] = field(default_factory=dict)  # third-party top-level name -> files
    optional: set[str] = field(default_factory=set)  # imported only inside `try: ... except ImportError`

    @property
    def units(self) -> set[str]:
        """What staging copies: the packages (whole, with their data files) of the modules that run."""
        return {unit_of(m) for m in self.modules}


def unit_of(module_file: str) -> str:
    """The package folder staged for a module file: ``services/scoring_api`` for
    ``services/scoring_api/app.py``, ``payments_core`` for ``payments_core/rules/model.py``."""
    parts = module_file.split("/")
    depth = 2 if parts[0] in SPLIT_PACKAGES else 1
    return "/".join(parts[:depth]) if len(parts) > depth else module_file


def module_file(module: str, repo_root: Path = REPO_ROOT) -> str | None:
    """The repository file of a first-party dotted module name (None: not a module of this repository,
    e.g. the ``Name`` of ``from package.module import Name``)."""
    path = Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if (repo_root / candidate).is_file():
            return candidate.as_posix()
    return None


def _imported_names(tree: ast.AST) -> Iterable[tuple[str, bool]]:
    """(dotted module name, optional) for every absolute import in ``tree``."""
    optional_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            optional_nodes.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in optional_nodes
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, id(node) in optional_nodes
            for alias in node.names:  # `from spark import pipelines` imports a module too
                yield f"{node.module}.{alias.name}", id(node) in optional_nodes


def scan(entry_units: Iterable[str], repo_root: Path = REPO_ROOT) -> CodeScan:
    """Every first-party module that runs when the entry units' modules are imported (their own and
    their packages' ``__init__``), following imports module by module; and the third-party imports."""
    result = CodeScan()
    todo: list[str] = []
    for unit in entry_units:
        path = repo_root / unit
        if not path.exists():
            raise BuildError(f"{unit} does not exist in {repo_root}")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        todo += [f.relative_to(repo_root).as_posix() for f in files if "__pycache__" not in f.parts]
    unconditional: set[str] = set()
    while todo:
        file = todo.pop()
        if file in result.modules:
            continue
        result.modules.add(file)
        parents = Path(file).parents
        todo += [
            (p / "__init__.py").as_posix()
            for p in parents
            if str(p) != "." and (repo_root / p / "__init__.py").is_file()
        ]
        tree = ast.parse((repo_root / file).read_text(), file)
        for module, optional in _imported_names(tree):
            top = module.split(".")[0]
            if top in FIRST_PARTY:
                found = module_file(module, repo_root)
                if found:
                    todo.append(found)
            elif top not in sys.stdlib_module_names and not top.startswith("_"):
                result.imports.setdefault(top, set()).add(file)
                if not optional:
                    unconditional.add(top)
    result.optional = set(result.imports) - unconditional
    return result


def requirements(target: Target, pins: dict[str, Pin], repo_root: Path = REPO_ROOT) -> tuple[CodeScan, list[str]]:
    """The scanned code of ``target`` and its requirement lines, sorted."""
    code = scan(target.entry_units, repo_root)
    roots = set(target.extra_roots)
    unknown = []
    for top, files in sorted(code.imports.items()):
        dist = normalize(DISTRIBUTION_OF.get(top, top))
        if dist in pins:
            roots.add(dist)
        elif top not in code.optional:
            unknown.append(f"{top} (imported by {', '.join(sorted(files))})")
    if unknown:
        raise BuildError(
            f"{target.name}: no distribution in {LOCK_FILE.name} for "
            + "; ".join(unknown)
            + ". Add the dependency to pyproject.toml and run `make lock`, or map the import name in "
            "bundle/build.py DISTRIBUTION_OF"
        )
    names = closure(roots, pins, target.excluded)
    return code, sorted(pins[name].line for name in names)


def requirements_text(target: Target, lines: list[str]) -> str:
    header = (
        f"# {target.name}: generated by `python -m bundle.build` from requirements.lock at every deploy;\n"
        "# do not edit (change pyproject.toml, `make lock`, redeploy).\n"
    )
    return header + "".join(f"{line}\n" for line in lines)


# ----------------------------------------------------------------------------------------- staging
def stage_app(target: Target, dest: Path, pins: dict[str, Pin], repo_root: Path = REPO_ROOT) -> list[str]:
    """Fill ``dest`` with the app's code, generated assets and requirements.txt; returns the
    requirement lines. Everything in ``dest`` but its README is replaced."""
    missing = [f for f in target.required_files if not (repo_root / f).is_file()]
    if missing:
        raise BuildError(
            f"{target.name}: {', '.join(missing)} missing: run `make web` (make deploy and make bundle-build do)"
        )
    code, lines = requirements(target, pins, repo_root)
    dest.mkdir(parents=True, exist_ok=True)
    for child in dest.iterdir():
        if child.name == STAGED_README:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for unit in sorted(code.units):
        src, out = repo_root / unit, dest / unit
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
        else:
            shutil.copy2(src, out)
    (dest / "requirements.txt").write_text(requirements_text(target, lines))
    return lines


def build(repo_root: Path = REPO_ROOT, apps_dir: Path = APPS_DIR, requirements_dir: Path = REQUIREMENTS_DIR) -> None:
    pins = parse_lock(repo_root / LOCK_FILE.name)
    for target in APPS:
        lines = stage_app(target, apps_dir / target.name, pins, repo_root)
        report(f"bundle: staged app {target.name} in {_shown(apps_dir / target.name)} ({len(lines)} pins)")
    requirements_dir.mkdir(parents=True, exist_ok=True)
    for target in REQUIREMENT_SETS:
        _, lines = requirements(target, pins, repo_root)
        path = requirements_dir / f"{target.name}.txt"
        path.write_text(requirements_text(target, lines))
        report(f"bundle: {_shown(path)} ({len(lines)} pins)")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bundle.build", description=__doc__).parse_args(argv)
    try:
        build()
    except BuildError as exc:
        report(f"error: {exc}", sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
