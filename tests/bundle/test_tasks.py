"""Every job task starts: its file exists, ``run_module.py`` accepts its parameters, the module it
names exists, and that module's own command-line parser accepts the arguments the bundle gives it
(references resolved the way the CLI and the Jobs service resolve them, job parameters at their
defaults, empty options left out as ``run_module.py`` leaves them out)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.tasks import run_module
from tests.bundle.bundle_files import REPO_ROOT, merged

BUNDLE = merged()
RESOURCES = BUNDLE["resources"]
PARSE_CHECK = Path(__file__).with_name("parse_check.py")
RUN_MODULE = REPO_ROOT / "bundle" / "tasks" / "run_module.py"
SAMPLE = {  # what the CLI resolves at deploy, for a dev deployment of jane.doe@example.com
    "workspace.file_path": "/Workspace/Users/jane.doe@example.com/.bundle/payment-analysis/dev/files",
    "workspace.root_path": "/Workspace/Users/jane.doe@example.com/.bundle/payment-analysis/dev",
    "workspace.current_user.userName": "jane.doe@example.com",
    "workspace.current_user.short_name": "jane_doe",
    "workspace.current_user.domain_friendly_name": "jane-doe",
    "bundle.target": "dev",
    "bundle.name": "payment-analysis",
    "var.catalog": "main",
    "var.kafka_bootstrap_servers": "broker-1.example.com:9092",
}


def resolve(text: str, job: dict) -> str:
    """``text`` with ``${...}`` resolved like the CLI (dev target) and ``{{job.*}}`` like the Jobs service."""

    def bundle_ref(match: re.Match) -> str:
        ref = match.group(1)
        if ref in SAMPLE:
            return SAMPLE[ref]
        parts = ref.split(".")
        if parts[0] == "var":
            value = (
                BUNDLE["targets"]["dev"]
                .get("variables", {})
                .get(parts[1], BUNDLE["variables"][parts[1]].get("default"))
            )
            return resolve(str(value), job)
        if parts[0] == "resources":
            body = RESOURCES[parts[1]][parts[2]]
            return resolve(str(body[parts[3]]), job) if parts[3] in body else "1234567890"
        raise AssertionError(f"cannot resolve ${{{ref}}}")

    def job_ref(match: re.Match) -> str:
        ref = match.group(1)
        if ref.startswith("job.parameters."):
            return {p["name"]: p["default"] for p in job.get("parameters", [])}[ref.removeprefix("job.parameters.")]
        if ref == "job.run_id":
            return "987654321"
        raise AssertionError(f"unknown dynamic value {{{{{ref}}}}}")

    text = re.sub(r"\$\{([^}]+)\}", bundle_ref, text)
    return re.sub(r"\{\{\s*([^}]+?)\s*\}\}", job_ref, text)


def python_tasks() -> list[tuple[str, str, list[str]]]:
    out = []
    for key, job in RESOURCES["jobs"].items():
        for task in job["tasks"]:
            spec = task.get("spark_python_task")
            if spec:
                file = (REPO_ROOT / "bundle" / "resources" / spec["python_file"]).resolve()
                out.append((f"{key}.{task['task_key']}", str(file), [resolve(a, job) for a in spec["parameters"]]))
    return out


TASKS = python_tasks()


def parse(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PA_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, str(PARSE_CHECK), module, *args],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=90,
        check=False,
    )


# Checks that must come out as given, to show the check can fail: argparse (a Spark job) and typer
# (a service) refuse unknown options, typer a bad value, and a module that parses nothing is reported.
REFUSALS = [
    ("spark.jobs.gold_views", ["--catalog", "main", "--no-such-option"], 2),
    ("spark.jobs.backtest", ["--days", "seven"], 2),
    ("services.simulator", ["run", "--rate", "200", "--no-such-option"], 2),
    ("services.simulator", ["backfill", "--days", "-1"], 2),
    ("services.simulator", ["backfill", "--days", "3"], 0),
    ("this", [], 3),  # prints the Zen of Python, parses no arguments
]


@pytest.fixture(scope="module")
def parsed() -> dict[str, tuple[str, list[str], dict]]:
    """Each task's module and arguments as run_module.py hands them over, and the module's verdict;
    then the REFUSALS (all in one process, so Spark and MLflow are imported once)."""
    prepared = {}
    for name, file, params in TASKS:
        assert file == str(RUN_MODULE), f"{name}: tasks start through run_module.py, not {file}"
        # a scratch environment: the tasks' --env (catalog, schema, volume paths) must not leak into
        # this process, where later tests read settings from os.environ
        prepared[name] = run_module.prepare(params, read_secret=lambda scope, key: "{}", environ={})
    for i, (module, args, _) in enumerate(REFUSALS):
        prepared[f"refusal-{i}"] = (module, args)
    out = subprocess.run(
        [sys.executable, str(PARSE_CHECK), "--batch"],
        input=json.dumps([[module, args] for module, args in prepared.values()]),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        text=True,
        capture_output=True,
        timeout=180,
        check=True,
    )
    verdicts = json.loads(out.stdout)
    return {name: (*prepared[name], verdict) for name, verdict in zip(prepared, verdicts, strict=True)}


def test_every_job_task_is_a_python_task_or_a_pipeline_or_job_run() -> None:
    kinds = {
        next(k for k in task if k.endswith("_task")) for job in RESOURCES["jobs"].values() for task in job["tasks"]
    }
    assert kinds <= {"spark_python_task", "pipeline_task", "run_job_task"}
    assert len(TASKS) >= 8


@pytest.mark.parametrize("name", [t[0] for t in TASKS])
def test_the_tasks_module_exists_and_accepts_its_arguments(name: str, parsed) -> None:
    module, args, verdict = parsed[name]
    assert importlib.util.find_spec(module) is not None, module
    assert verdict["code"] == 0, f"{module} {args}:\n{verdict['stderr']}"


def test_the_check_refuses_arguments_a_module_does_not_take(parsed) -> None:
    codes = [parsed[f"refusal-{i}"][2]["code"] for i in range(len(REFUSALS))]
    assert codes == [expected for _, _, expected in REFUSALS]
    assert "no-such-option" in parsed["refusal-0"][2]["stderr"]
    assert parse("this", []).returncode == 3  # the one-module form


def test_empty_job_parameters_reach_the_module_as_its_own_defaults(parsed) -> None:
    module, args, _ = parsed["bootstrap.bootstrap"]
    assert module == "spark.jobs.bootstrap"
    assert "--max-summaries" not in args  # the job parameter's default is empty
    module, args, _ = parsed["backtest.backtest"]
    assert "--candidate-rules" not in args
    assert (
        args[args.index("--result-json") + 1]
        == "/Volumes/main/jane_doe_payment_analysis/rules/backtests/987654321.json"
    )


def test_run_module_applies_environment_and_secrets() -> None:
    read = []

    def secret(scope: str, key: str) -> str:
        read.append((scope, key))
        return '{"security.protocol": "SASL_SSL"}'

    environ: dict[str, str] = {}
    module, args = run_module.prepare(
        [
            "--env",
            "PA_TEST_ENV=a=b",
            "--secret-scope",
            "s",
            "--secret-env",
            "PA_TEST_SECRET=k",
            "mod",
            "--x",
            "",
            "--y=",
            "--z",
            "1",
        ],
        read_secret=secret,
        environ=environ,
    )
    assert (module, args) == ("mod", ["--z", "1"])
    assert environ == {"PA_TEST_ENV": "a=b", "PA_TEST_SECRET": '{"security.protocol": "SASL_SSL"}'}
    assert read == [("s", "k")]
    assert "PA_TEST_ENV" not in os.environ
    with pytest.raises(SystemExit, match="needs --secret-scope"):
        run_module.prepare(["--secret-env", "A=k", "mod"], read_secret=secret, environ=environ)


def test_run_module_runs_a_module_from_the_repository_root(tmp_path: Path) -> None:
    """The task file, started as Databricks starts it (a script, from another folder, without the
    repository on sys.path), runs a repository module as __main__ with the given command line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, str(RUN_MODULE), "--env", "PA_LOG_LEVEL=WARNING", "spark.jobs.gold_views", "--list", "--json"],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert '"name": "v_approval_kpis_daily"' in out.stdout
