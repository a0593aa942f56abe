"""The dashboard resources are generated from the dashboard definitions: the committed files must be
what ``python -m bundle.generate`` writes (``make bundle-resources``)."""

from __future__ import annotations

from pathlib import Path

from bundle import generate
from dashboards import DASHBOARDS


def test_the_committed_dashboard_resources_are_up_to_date() -> None:
    assert generate.differences() == [], "run `make bundle-resources` and commit bundle/resources"


def test_a_missing_changed_or_stale_resource_is_reported_and_rewritten(tmp_path: Path) -> None:
    generate.write(tmp_path)
    first = DASHBOARDS[0]
    (tmp_path / f"{first.id}{generate.SUFFIX}").write_text("resources: {}\n")
    (tmp_path / f"{DASHBOARDS[1].id}{generate.SUFFIX}").unlink()
    (tmp_path / f"retired{generate.SUFFIX}").write_text("resources: {}\n")
    assert sorted(generate.differences(tmp_path)) == sorted(
        [
            f"differs: {first.id}.dashboard.yml",
            f"missing: {DASHBOARDS[1].id}.dashboard.yml",
            "stale: retired.dashboard.yml",
        ]
    )
    generate.write(tmp_path)
    assert generate.differences(tmp_path) == []
    assert len(list(tmp_path.glob("*" + generate.SUFFIX))) == len(DASHBOARDS)
