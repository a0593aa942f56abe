"""A real, quick step for the control plane's tests: prints numbered lines with a pause, optionally
writes a result JSON, exits with the given code. `python -m tests.services.control_plane.quick_step`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.05)
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument("--result-json", type=Path, default=None)
    args = p.parse_args()
    for i in range(args.lines):
        print(f"quick step line {i + 1} of {args.lines}", flush=True)
        time.sleep(args.pause)
    if args.result_json:
        args.result_json.write_text(json.dumps({"lines": args.lines}))
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
