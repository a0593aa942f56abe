"""A stand-in for the backtest step in the rules API tests: same command line as ``spark.jobs.backtest``
(``--candidate-rules``, ``--days``, ``--max-rows``, ``--result-json``), reads the candidate rule set the
control plane wrote and reports a comparison in the job's result format. Waits for the file named by
``RULES_STUB_GATE`` (when set) so a test can observe a running backtest."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from payments_core.rules.model import RuleSet, starter_rule_set

# (metric, live, candidate): the candidate declines more, catches more fraud
METRICS = (
    ("transactions", 100.0, 100.0),
    ("approval_rate", 0.90, 0.85),
    ("fraud_caught", 3.0, 5.0),
    ("fraud_caught_rate", 0.5, 0.8333),
    ("fraud_caught_value_usd", 300.0, 420.5),
    ("false_declines", 1.0, 2.0),
    ("false_decline_value_usd", 10.0, 35.25),
    ("approved_value_usd", 9000.0, 8700.0),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--candidate-rules", required=True)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--max-rows", type=int, default=0)
    p.add_argument("--result-json", type=Path, required=True)
    args = p.parse_args(argv)
    gate = os.environ.get("RULES_STUB_GATE")
    deadline = time.monotonic() + 30
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    candidate = RuleSet.from_json(Path(args.candidate_rules).read_text())
    print(f"replaying {args.days} days with {len(candidate.rules)} candidate rules", flush=True)
    body = {
        "backtest_id": "stub",
        "rows": 100,
        "range_start": "2026-01-01 00:00:00",
        "range_end": "2026-01-08 00:00:00",
        "live_rule_set_version": starter_rule_set().full_version,
        "candidate_rule_set_version": candidate.full_version,
        "candidate_rule_ids": [r.id for r in candidate.rules],
        "days": args.days,
        "live_model_versions": {},
        "candidate_model_versions": {},
        "metrics": [{"metric": m, "live": a, "candidate": b, "delta": b - a} for m, a, b in METRICS],
    }
    args.result_json.write_text(json.dumps(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
