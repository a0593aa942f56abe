"""Write (or check) the Lakeview file of every dashboard.

    python -m dashboards.generate            # writes dashboards/NN_<id>.lvdash.json, removes stale ones
    python -m dashboards.generate --check    # exit 1 when a committed file differs from its definition

The files are committed: the bundle deploys them, with the catalog and schema of each target set by
the dashboard resource (``dataset_catalog`` / ``dataset_schema``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards import DASHBOARDS, FOLDER
from dashboards.lakeview import dumps, to_lakeview

SUFFIX = ".lvdash.json"


def expected_files() -> dict[str, str]:
    """File name -> content, for every dashboard."""
    problems = [f"{d.id}: {p}" for d in DASHBOARDS for p in d.problems()]
    if problems:
        raise ValueError("invalid dashboard definitions:\n  " + "\n  ".join(problems))
    return {d.file_name: dumps(to_lakeview(d)) for d in DASHBOARDS}


def differences(folder: Path = FOLDER) -> list[str]:
    """What ``generate`` would change in ``folder``: missing, different and stale files."""
    expected = expected_files()
    out = []
    for name, text in expected.items():
        path = folder / name
        if not path.exists():
            out.append(f"missing: {name}")
        elif path.read_text() != text:
            out.append(f"differs: {name}")
    out += [f"stale: {p.name}" for p in sorted(folder.glob("*" + SUFFIX)) if p.name not in expected]
    return out


def write(folder: Path = FOLDER) -> list[str]:
    """Write every file that changed and remove files of dashboards that no longer exist."""
    changed = []
    expected = expected_files()
    for name, text in expected.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    for path in sorted(folder.glob("*" + SUFFIX)):
        if path.name not in expected:
            path.unlink()
            changed.append(path.name + " (removed)")
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    p.add_argument("--check", action="store_true", help="only report differences; exit 1 when there are any")
    p.add_argument("--folder", type=Path, default=FOLDER, help="where the files are (default: the package)")
    args = p.parse_args(argv)
    if args.check:
        diff = differences(args.folder)
        for line in diff:
            sys.stdout.write(line + "\n")
        if diff:
            sys.stdout.write("run `python -m dashboards.generate` and commit the files\n")
        return 1 if diff else 0
    changed = write(args.folder)
    sys.stdout.write(
        (f"wrote {len(changed)} file(s): " + ", ".join(changed) if changed else "all files up to date") + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
