"""The agents are a library the control plane hosts: they import the decision core and the dashboards'
dataset definitions, never a service, Spark or the launcher (the reader and the backtest runner are
passed in)."""

from __future__ import annotations

from tests.test_architecture import REPO, _imports, _python_files


def test_agents_import_no_service_no_spark_and_no_launcher():
    files = _python_files("agents")
    assert len(files) >= 8
    for path in files:
        bad = {n for n in _imports(path) if n.split(".")[0] in {"services", "spark", "pyspark", "launcher", "delta"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
