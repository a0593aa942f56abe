"""What a deploy uploads (bundle/build.py): the staged apps run from their own folder, serve every
asset their pages ask for, and pin exactly what requirements.lock pins; the deploy uploads all of it."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bundle import build
from tests.bundle.bundle_files import BUNDLE_DIR, REPO_ROOT, merged

LOCK_LINES = {line.strip() for line in (REPO_ROOT / "requirements.lock").read_text().splitlines() if "==" in line}


@pytest.fixture(scope="module")
def pins() -> dict[str, build.Pin]:
    return build.parse_lock()


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, pins) -> dict[str, Path]:
    """Both apps staged by the deploy's own code, into a temporary folder."""
    root = tmp_path_factory.mktemp("apps")
    for target in build.APPS:
        build.stage_app(target, root / target.name, pins)
    return {target.name: root / target.name for target in build.APPS}


def requirement_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_the_lock_file_is_read_whole(pins) -> None:
    assert len(pins) == len(LOCK_LINES)
    assert pins["uvicorn"].line == "uvicorn==0.54.0" and "mlflow-skinny" in pins["uvicorn"].needed_by
    assert "faust-streaming" in pins["aiokafka"].needed_by


@pytest.mark.parametrize("app", [t.name for t in build.APPS])
def test_each_apps_requirements_are_the_locks_exact_pins(app: str, staged) -> None:
    lines = requirement_lines(staged[app] / "requirements.txt")
    assert lines == sorted(set(lines))
    assert set(lines) <= LOCK_LINES, sorted(set(lines) - LOCK_LINES)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", line) for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert {"fastapi", "uvicorn", "uvloop", "pydantic", "pydantic-settings", "mlflow", "databricks-sdk"} <= names
    assert "pytest" not in names and "ruff" not in names  # development tools stay local


def test_the_apps_get_what_they_load_without_importing_it(staged) -> None:
    control_plane = {line.split("==")[0] for line in requirement_lines(staged["control_plane"] / "requirements.txt")}
    assert {"psycopg", "psycopg-binary", "python-multipart", "jinja2", "itsdangerous", "alembic"} <= control_plane
    scoring = {line.split("==")[0] for line in requirement_lines(staged["scoring_api"] / "requirements.txt")}
    assert {"redis", "hiredis", "faust-streaming", "lark"} <= scoring
    assert "psycopg" not in scoring  # each app gets its own closure, not the whole lock


@pytest.mark.parametrize("app", [t.name for t in build.APPS])
def test_every_import_of_the_staged_code_is_pinned(app: str, staged, pins) -> None:
    """Scanning what was staged (not the repository) finds no third-party import without a pin."""
    pinned = {line.split("==")[0] for line in requirement_lines(staged[app] / "requirements.txt")}
    code = build.scan(["services"], staged[app])
    missing = []
    for top, files in code.imports.items():
        dist = build.normalize(build.DISTRIBUTION_OF.get(top, top))
        if dist not in pinned and top not in code.optional:
            missing.append(f"{top} ({sorted(files)[0]})")
    assert missing == []


@pytest.mark.parametrize(
    ("app", "module"), [("control_plane", "services.control_plane.app"), ("scoring_api", "services.scoring_api.app")]
)
def test_each_staged_app_imports_from_its_own_folder(app: str, module: str, staged) -> None:
    """The app starts from the staged folder alone: every first-party module it loads is there."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    main_module = module.rsplit(".", 1)[0] + ".__main__"
    probe = (
        f"import sys, importlib; importlib.import_module({module!r}); importlib.import_module({main_module!r}); "
        "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=staged[app],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = [Path(f) for f in out.stdout.splitlines()]
    from_checkout = [str(f) for f in loaded if REPO_ROOT in f.parents and ".venv" not in f.parts]
    assert from_checkout == []
    from_staged = [f for f in loaded if staged[app] in f.parents]
    assert any(f.name == "app.py" for f in from_staged) and any("payments_core" in f.parts for f in from_staged)


def test_the_control_plane_serves_every_asset_its_pages_ask_for(staged) -> None:
    app = staged["control_plane"] / "services" / "control_plane"
    folders = {"static": app / "static", "vendor": app / "web" / "dist"}
    asked = set()
    for page in [*(app / "templates").glob("*.html"), *(app / "static").glob("*.js")]:
        asked |= set(re.findall(r"/(static|vendor)/([A-Za-z0-9_.-]+\.[a-z]+)", page.read_text()))
    assert ("vendor", "echarts.min.js") in asked and ("vendor", "world-countries.geo.json") in asked
    missing = sorted(f"/{kind}/{name}" for kind, name in asked if not (folders[kind] / name).is_file())
    assert missing == []
    assert not (app / "web" / "node_modules").exists()  # the packages' sources are not uploaded


def test_staging_refuses_without_the_front_end_build(tmp_path: Path, pins) -> None:
    target = replace(build.CONTROL_PLANE, required_files=("services/control_plane/web/dist/not-built.js",))
    with pytest.raises(build.BuildError, match="make web"):
        build.stage_app(target, tmp_path / "cp", pins)


def test_staging_replaces_what_an_earlier_deploy_left(tmp_path: Path, pins) -> None:
    dest = tmp_path / "scoring_api"
    (dest / "services" / "removed_module").mkdir(parents=True)
    (dest / build.STAGED_README).write_text("kept")
    build.stage_app(build.SCORING_API, dest, pins)
    assert not (dest / "services" / "removed_module").exists()
    assert (dest / build.STAGED_README).read_text() == "kept"


def test_an_import_the_lock_does_not_know_stops_the_build(tmp_path: Path, pins) -> None:
    (tmp_path / "services" / "newsvc").mkdir(parents=True)
    (tmp_path / "services" / "__init__.py").write_text("")
    (tmp_path / "services" / "newsvc" / "__init__.py").write_text("import fastapi\nimport notalockedpackage\n")
    (tmp_path / "services" / "newsvc" / "optional.py").write_text(
        "try:\n    import alsonotlocked\nexcept ImportError:\n    alsonotlocked = None\n"
    )
    target = build.Target("newsvc", ("services/newsvc",))
    with pytest.raises(build.BuildError, match=r"notalockedpackage \(imported by services/newsvc/__init__.py\)"):
        build.requirements(target, pins, tmp_path)
    (tmp_path / "services" / "newsvc" / "__init__.py").write_text("import fastapi\n")
    _, lines = build.requirements(target, pins, tmp_path)  # an optional import may be missing
    assert "fastapi==0.165.0" in lines and "starlette==1.10.0" in lines


def test_the_runtime_keeps_its_own_spark_and_numpy(pins) -> None:
    for target in build.REQUIREMENT_SETS:
        _, lines = build.requirements(target, pins)
        names = {line.split("==")[0] for line in lines}
        assert not names & build.RUNTIME_PROVIDED, target.name
        assert set(lines) <= LOCK_LINES
    _, jobs = build.requirements(build.JOBS, pins)
    assert {"confluent-kafka==2.16.1", "typer==0.29.2", "redis==8.1.0"} <= set(jobs)
    _, pipeline = build.requirements(build.PIPELINE, pins)
    assert "mlflow" not in {line.split("==")[0] for line in pipeline}  # the ETL loads no models


def test_the_deploy_uploads_the_staged_files() -> None:
    """The staged folders are git-ignored (nothing generated is committed), so the bundle's
    sync.include must name them, and the apps and tasks must point into them."""
    bundle = merged()
    include = bundle["sync"]["include"]
    staged_files = ["apps/control_plane/services/control_plane/web/dist/echarts.min.js", ".build/requirements/jobs.txt"]
    for path in staged_files:
        assert any(fnmatch.fnmatch(path, pattern) for pattern in include), path
        ignored = subprocess.run(["git", "check-ignore", "-q", f"bundle/{path}"], cwd=REPO_ROOT, check=False)
        assert ignored.returncode == 0, f"bundle/{path} is not git-ignored"
    committed = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", "bundle/apps"],
        cwd=REPO_ROOT,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.split()
    assert sorted(committed) == [f"bundle/apps/{t.name}/README.md" for t in build.APPS]
    for key, app in bundle["resources"]["apps"].items():
        assert (BUNDLE_DIR / "resources" / app["source_code_path"]).resolve() == build.APPS_DIR / key
    requirement_files = {
        dep.split()[-1].removeprefix("${workspace.file_path}/bundle/")
        for job in bundle["resources"]["jobs"].values()
        for env in job.get("environments", [])
        for dep in env["spec"]["dependencies"]
    }
    assert requirement_files == {".build/requirements/jobs.txt"}
    assert bundle["artifacts"]["staged_sources"]["build"] == "make bundle-build"
