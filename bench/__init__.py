"""Benchmarks: `make bench-<area>` runs `python -m bench.<area>`. Each starts what it needs on
loopback, measures its own baseline/ceiling in the same run, prints a table and writes
bench/results/<area>.json (git-ignored)."""
