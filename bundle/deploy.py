"""``make deploy TARGET=dev``: check the Databricks CLI, stage the build, validate, deploy, run.

    python -m bundle.deploy --target dev [--var catalog=main]... [--run first_run]... [--validate-only]

Before anything reaches the workspace it refuses, each time with what to do: a missing CLI, a CLI older
than ``bundle.databricks_cli_version`` in ``bundle/databricks.yml`` (or the legacy pip
``databricks-cli``), a CLI that cannot authenticate, and a per-workspace variable nobody set. Then it
stages the apps and the pinned requirements (``bundle/build.py``), and runs ``databricks bundle
validate``, ``deploy`` (which starts both apps) and, for each ``--run``, ``bundle run``. Standard
library only: deploying needs Python, Node.js (``make web``) and the Databricks CLI, not the local
platform's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bundle import build
from bundle.build import report

BUNDLE_DIR = Path(__file__).resolve().parent
BUNDLE_FILE = BUNDLE_DIR / "databricks.yml"
INSTALL_HINT = (
    "install the Databricks CLI (https://docs.databricks.com/dev-tools/cli/install: Homebrew, winget, or the "
    "install script of github.com/databricks/setup-cli), or build it from source with `make bundle-validate-cli` "
    "and point DATABRICKS_CLI at .cache/databricks-cli/v<version>/databricks"
)
AUTH_HINT = (
    "authenticate the CLI to your workspace: `databricks auth login --host https://<workspace-url>` (OAuth, "
    "recommended), or export DATABRICKS_HOST and DATABRICKS_TOKEN (a personal access token; do not also set "
    "DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET, which turn on OAuth scope checks); with several profiles "
    "in ~/.databrickscfg choose one with DATABRICKS_CONFIG_PROFILE"
)


class DeployError(RuntimeError):
    """A reason not to deploy; the message says what to do."""


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", text.strip())
        if not match:
            raise ValueError(f"not a version: {text!r}")
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def minimum_cli_version(bundle_file: Path = BUNDLE_FILE) -> Version:
    """The ``>= X.Y.Z`` of ``bundle.databricks_cli_version`` (the CLI enforces it too; this check runs
    first so that an old CLI is refused before it reads keys it does not know)."""
    match = re.search(r'^\s*databricks_cli_version:\s*"?>=\s*([0-9.]+)"?\s*$', bundle_file.read_text(), re.M)
    if not match:
        raise DeployError(f'{bundle_file}: bundle.databricks_cli_version must read ">= X.Y.Z"')
    return Version.parse(match.group(1))


def cli_version(version_output: str) -> Version:
    """The version ``databricks --version`` printed ("Databricks CLI v1.12.1")."""
    match = re.search(r"Databricks CLI v(\S+)", version_output)
    if match:
        return Version.parse(match.group(1))
    if re.search(r"^Version \d", version_output.strip()):
        raise DeployError(
            "`databricks` is the legacy Python databricks-cli (pip), which has no bundles: "
            f"`pip uninstall databricks-cli`, then {INSTALL_HINT}"
        )
    raise DeployError(f"cannot read the CLI's version from {version_output.strip()!r}")


class Cli:
    """The Databricks CLI, run in the bundle folder."""

    def __init__(self, executable: str, cwd: Path = BUNDLE_DIR) -> None:
        self.executable, self.cwd = executable, cwd

    def run(self, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, *args], cwd=self.cwd, text=True, capture_output=capture, check=False, timeout=3600
        )


def find_cli(environ: dict[str, str] | None = None) -> Cli:
    env = os.environ if environ is None else environ
    name = env.get("DATABRICKS_CLI", "databricks")
    path = shutil.which(name)
    if path is None:
        raise DeployError(f"the Databricks CLI ({name}) is not on PATH: {INSTALL_HINT}")
    return Cli(path)


def check_cli(cli: Cli, minimum: Version) -> Version:
    out = cli.run("--version")
    version = cli_version(out.stdout + out.stderr)
    if version < minimum:
        raise DeployError(
            f"Databricks CLI {version} is older than the {minimum} this bundle needs "
            f"(bundle.databricks_cli_version in {BUNDLE_FILE.relative_to(BUNDLE_DIR.parent)}): upgrade it "
            "(`brew upgrade databricks`, `winget upgrade Databricks.DatabricksCLI`, or the install script again)"
        )
    return version


def check_auth(cli: Cli) -> str:
    """The user (or service principal) the CLI acts as."""
    out = cli.run("current-user", "me", "--output", "json")
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise DeployError(
            "the Databricks CLI is not authenticated ("
            + (detail[-1] if detail else f"exit {out.returncode}")
            + f"): {AUTH_HINT}"
        )
    try:
        return json.loads(out.stdout).get("userName", "?")
    except json.JSONDecodeError:
        return "?"


def explain_cli_failure(step: str, out: subprocess.CompletedProcess[str]) -> DeployError:
    text = (out.stderr or "") + (out.stdout or "")
    hint = ""
    match = re.search(r"no value assigned to required variable (\w+)", text)
    if match:
        name = match.group(1)
        hint = (
            f'\n{name} is set per workspace: `make deploy TARGET=<target> VARS="{name}=..."`, '
            f"export BUNDLE_VAR_{name}=..., or put it in bundle/.databricks/bundle/<target>/variable-overrides.json "
            "(docs/deploy.md lists them)"
        )
    elif "does not have required scopes" in text:
        hint = f"\n{AUTH_HINT}"
    return DeployError(f"`databricks bundle {step}` failed:\n{text.strip()}{hint}")


def without_false_warnings(cli_output: str) -> str:
    """The CLI's output without its "Pattern bundle/... does not match any files" warnings: it checks
    sync.include against bundle/ while it syncs from the repository root, where the files are."""
    blocks = re.split(r"\n\s*\n", cli_output)
    kept = [b for b in blocks if not re.match(r"Warning: Pattern bundle/\S+ does not match any files", b.strip())]
    return "\n\n".join(kept)


def bundle_args(target: str, variables: Sequence[str]) -> list[str]:
    out = ["--target", target]
    for var in variables:
        if "=" not in var:
            raise DeployError(f"--var {var!r}: expected NAME=VALUE")
        out += ["--var", var]
    return out


def deploy(target: str, variables: Sequence[str] = (), runs: Sequence[str] = (), validate_only: bool = False) -> None:
    cli = find_cli()
    version = check_cli(cli, minimum_cli_version())
    user = check_auth(cli)
    report(f"deploy: Databricks CLI {version}, signed in as {user}, target {target}")
    build.build()
    args = bundle_args(target, variables)
    out = cli.run("bundle", "validate", *args)
    if out.returncode != 0:
        raise explain_cli_failure("validate", out)
    sys.stderr.write(without_false_warnings(out.stderr))
    if validate_only:
        report("deploy: the bundle is valid (nothing deployed)")
        return
    if cli.run("bundle", "deploy", *args, capture=False).returncode != 0:
        raise DeployError("`databricks bundle deploy` failed (its output is above; docs/deploy.md, Troubleshooting)")
    for key in runs:
        if cli.run("bundle", "run", *args, key, capture=False).returncode != 0:
            raise DeployError(f"`databricks bundle run {key}` failed (its output is above)")
    cli.run("bundle", "summary", *args, capture=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bundle.deploy", description=__doc__)
    p.add_argument("--target", default="dev", help="bundle target: dev (default) or prod")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a bundle variable")
    p.add_argument("--run", action="append", default=[], metavar="KEY", help="a job to run after the deploy")
    p.add_argument("--validate-only", action="store_true", help="stop after `bundle validate`")
    args = p.parse_args(argv)
    try:
        deploy(args.target, args.var, args.run, args.validate_only)
    except (DeployError, build.BuildError) as exc:
        report(f"error: {exc}", sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
