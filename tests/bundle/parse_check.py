"""Does a module's command line accept these arguments?  ``python parse_check.py MODULE [ARG]...``
(or ``--batch`` with a JSON list of ``[MODULE, [ARG...]]`` on stdin, answered with JSON on stdout)

Runs ``MODULE`` as ``__main__`` exactly as ``python -m MODULE ARG...`` would (so it is the module's
own argparse parser or typer/click command that judges), but stops at the moment the arguments are
accepted, before the module does any work: ``argparse.ArgumentParser.parse_args`` and the invocation
of a click (typer) leaf command raise :class:`Accepted` once parsing succeeded. Exit 0: accepted;
2: refused (the parser's own message on stderr); 3: the module finished without parsing anything.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import runpy
import sys


class Accepted(BaseException):
    """Parsing succeeded (a BaseException, so no ``except Exception`` in the module swallows it)."""


def _stop_after_argparse() -> None:
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Accepted

    argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]


def _stop_before_click_commands() -> None:
    # typer carries its own copy of click (typer._click) besides the click package; a group (click's
    # Group, typer's TyperGroup) runs its callback through Command.invoke, then parses the subcommand
    groups = tuple(
        getattr(importlib.import_module(module), name)
        for module, name in (("click", "Group"), ("typer.core", "TyperGroup"))
        if importlib.util.find_spec(module.split(".")[0])
    )
    for module in ("click.core", "typer._click.core"):
        if not importlib.util.find_spec(module.split(".")[0]):
            continue
        command = importlib.import_module(module).Command
        original = command.invoke

        def invoke(self, ctx, original=original):
            if isinstance(self, groups):
                return original(self, ctx)
            raise Accepted

        command.invoke = invoke


def check(module: str, args: list[str]) -> int:
    """0: ``args`` accepted; 2 (or the parser's code): refused; 3: nothing parsed them."""
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Accepted:
        return 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
        return code or 3
    return 3


def main() -> int:
    _stop_after_argparse()
    _stop_before_click_commands()
    if sys.argv[1:] == ["--batch"]:
        # many checks in one process: the modules' heavy imports (Spark, MLflow) are paid once
        results = []
        stdout, stderr = sys.stdout, sys.stderr
        for module, args in json.load(sys.stdin):
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            try:
                code = check(module, args)
            finally:
                captured = sys.stderr.getvalue()
                sys.stdout, sys.stderr = stdout, stderr
            results.append({"module": module, "args": args, "code": code, "stderr": captured[-3000:]})
        json.dump(results, stdout)
        return 0
    if len(sys.argv) < 2:
        print(
            "usage: parse_check.py MODULE [ARG]... | parse_check.py --batch < [[MODULE, [ARG...]], ...]",
            file=sys.stderr,
        )
        return 64
    return check(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
