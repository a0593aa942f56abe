"""``make deploy`` refuses early and says what to do: no CLI, a legacy or too old CLI, no sign-in, an
unset per-workspace variable. The CLI is replaced by small scripts on PATH that answer as it does."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from bundle import deploy
from tests.bundle.bundle_files import BUNDLE_FILE, load


def fake_cli(tmp_path: Path, version_line: str, me_exit: int = 0, me_error: str = "") -> dict[str, str]:
    script = tmp_path / "databricks"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{version_line}"; exit 0; fi\n'
        'if [ "$1" = "current-user" ]; then\n'
        f'  if [ {me_exit} -ne 0 ]; then echo "{me_error}" >&2; exit {me_exit}; fi\n'
        '  echo \'{"userName": "jane.doe@example.com"}\'; exit 0\n'
        "fi\n"
        "exit 9\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": str(tmp_path)}


def test_the_minimum_version_is_the_bundles_pin() -> None:
    pin = load(BUNDLE_FILE)["bundle"]["databricks_cli_version"]
    assert pin == f">= {deploy.minimum_cli_version()}"
    assert deploy.minimum_cli_version() >= deploy.Version(1, 12, 1)


def test_a_missing_cli_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(deploy.DeployError, match="not on PATH: install the Databricks CLI"):
        deploy.find_cli({"PATH": str(tmp_path)})


def test_the_legacy_python_cli_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", fake_cli(tmp_path, "Version 0.18.0")["PATH"])
    with pytest.raises(deploy.DeployError, match="legacy Python databricks-cli"):
        deploy.check_cli(deploy.find_cli(), deploy.Version(1, 12, 1))


def test_an_old_cli_is_refused_with_the_version_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", fake_cli(tmp_path, "Databricks CLI v0.250.0")["PATH"])
    with pytest.raises(deploy.DeployError, match=r"0\.250\.0 is older than the 1\.12\.1 this bundle needs"):
        deploy.check_cli(deploy.find_cli(), deploy.Version(1, 12, 1))


def test_a_recent_cli_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", fake_cli(tmp_path, "Databricks CLI v1.13.0")["PATH"])
    cli = deploy.find_cli()
    assert deploy.check_cli(cli, deploy.minimum_cli_version()) == deploy.Version(1, 13, 0)
    assert deploy.check_auth(cli) == "jane.doe@example.com"


def test_a_cli_without_sign_in_is_refused_with_how_to_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_cli(
        tmp_path,
        "Databricks CLI v1.13.0",
        me_exit=1,
        me_error="Error: default auth: cannot configure default credentials",
    )
    monkeypatch.setenv("PATH", env["PATH"])
    with pytest.raises(deploy.DeployError, match=r"not authenticated \(Error: default auth.*databricks auth login"):
        deploy.check_auth(deploy.find_cli())


def test_an_unset_workspace_variable_is_explained() -> None:
    out = subprocess.CompletedProcess(
        [], 1, "", "Error: no value assigned to required variable kafka_bootstrap_servers. Variables are usually ..."
    )
    message = str(deploy.explain_cli_failure("validate", out))
    assert 'VARS="kafka_bootstrap_servers=..."' in message and "BUNDLE_VAR_kafka_bootstrap_servers" in message


def test_versions_compare_as_numbers() -> None:
    assert deploy.Version.parse("v1.12.1") < deploy.Version.parse("1.13.0") < deploy.Version.parse("1.100.0")
    assert deploy.cli_version("Databricks CLI v1.13.0-dev+abc") == deploy.Version(1, 13, 0)
    with pytest.raises(deploy.DeployError):
        deploy.bundle_args("dev", ["catalog"])


def test_the_clis_false_sync_warnings_are_left_out_and_others_kept() -> None:
    output = (
        "Warning: Pattern bundle/.build/** does not match any files\n  at sync.include[0]\n  in databricks.yml:33:7\n\n"
        "Warning: something real\n  at resources.jobs.x\n\n"
        "Warning: Pattern bundle/apps/** does not match any files\n  at sync.include[1]\n"
    )
    assert deploy.without_false_warnings(output).strip() == "Warning: something real\n  at resources.jobs.x"
