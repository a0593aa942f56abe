"""Entry point of every job task: run one of the repository's command-line modules as ``python -m`` would.

    run_module.py [--env NAME=VALUE]... [--secret-scope SCOPE --secret-env NAME=KEY]... MODULE [ARG]...

A Databricks Python task runs a file, not a module, and its ``sys.path`` does not start at the
repository root the bundle syncs (``${workspace.file_path}``): this file puts the root first, sets the
environment the module's settings read (``PA_*``; secrets fetched from the scope by key, never written
in the bundle), then runs ``MODULE`` as ``__main__`` with ``ARG``... as its command line.

An option followed by an empty value is left out (``--max-summaries ""``): a job parameter left empty
then means "the module's own default", which is how the bundle passes optional step parameters.
Standard library only, but for the secrets (databricks-sdk, in every Databricks runtime).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

SecretReader = Callable[[str, str], str]


def repo_root() -> Path:
    """The folder holding ``bundle/`` (this file is ``<root>/bundle/tasks/run_module.py``)."""
    here = globals().get("__file__") or sys.argv[0]
    return Path(here).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_module.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set an environment variable")
    p.add_argument("--secret-scope", default=None, help="secret scope of the --secret-env keys")
    p.add_argument(
        "--secret-env", action="append", default=[], metavar="NAME=KEY", help="environment variable from a secret"
    )
    p.add_argument("module", help="dotted module to run as __main__, e.g. spark.jobs.train")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the module's command line")
    return p


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"run_module.py: {what} {value!r} is not NAME=VALUE")
        out.append((name, rest))
    return out


def without_empty_options(args: list[str]) -> list[str]:
    """``args`` without the options whose value is empty (``--x ""`` and ``--x=``)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and arg.endswith("="):
            i += 1
            continue
        if arg.startswith("--") and "=" not in arg and i + 1 < len(args) and args[i + 1] == "":
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def databricks_secret(scope: str, key: str) -> str:
    """A secret of the workspace the task runs in (the runtime authenticates the SDK)."""
    from databricks.sdk import WorkspaceClient  # noqa: PLC0415 - only tasks that read secrets need the SDK

    return WorkspaceClient().dbutils.secrets.get(scope=scope, key=key)


def prepare(
    argv: list[str],
    read_secret: SecretReader = databricks_secret,
    environ: MutableMapping[str, str] = os.environ,
) -> tuple[str, list[str]]:
    """Apply the environment of ``argv`` to ``environ``; return the module and its command line."""
    ns = build_parser().parse_args(argv)
    secrets = _pairs(ns.secret_env, "--secret-env")
    if secrets and not ns.secret_scope:
        raise SystemExit("run_module.py: --secret-env needs --secret-scope")
    for name, value in _pairs(ns.env, "--env"):
        environ[name] = value
    for name, key in secrets:
        environ[name] = read_secret(ns.secret_scope, key)
    return ns.module, without_empty_options(ns.args)


def main(argv: list[str] | None = None) -> None:
    module, args = prepare(sys.argv[1:] if argv is None else argv)
    root = str(repo_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
