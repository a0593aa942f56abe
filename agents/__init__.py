"""Analyst agents that show their numbers.

An orchestrator (``orchestrator.py``) routes a question, one specialist's run or a scheduled run to five
specialists (``specialists.py``: smart routing, smart retry, decline analyst, risk assessor, performance
recommender). Their tools (``tools.py``) are parameterised queries over the dashboard tables
``dash_<dataset>`` (the same dataset layer the 12 dashboards read), and backtests of a candidate rule
against the live set (``backtest.py``, run by the host). Every recommendation (``model.py``) carries its
evidence: the queries run (SQL and parameters), the figures, the expected lift; they are written to the
lakehouse table ``approval_recommendations`` with a status (``store.py``).

Without an LLM everything is deterministic, answers templated. With an OpenAI-compatible endpoint
(``llm.py``) the model plans (function calls, each checked, bounded and logged) and phrases.

This package imports ``payments_core`` and ``dashboards`` only: the host (the control plane) passes in the
reader (``query.QueryRunner``, which ``DeltaReader`` satisfies) and the backtest runner.
"""

from __future__ import annotations

from agents.orchestrator import Orchestrator, RunRequest, RunResult, route
from agents.specialists import BY_NAME, SPECIALISTS

__all__ = ["BY_NAME", "SPECIALISTS", "Orchestrator", "RunRequest", "RunResult", "route"]
