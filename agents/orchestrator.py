"""The orchestrator: routes a question, one specialist's run or a scheduled run (every specialist) to the
specialists, and answers with their recommendations.

Without an LLM (the default) routing is by intent keywords and the vocabulary of the data (a card
network, a merchant segment, a decline reason, a risk tier named in the question narrow the analysis),
and the answer is templated from the recommendations. With an LLM configured, the model plans: it is
offered the query tools, the specialists' analyses (``analyze_<name>``) and ``backtest_rule`` as
functions, and every call it asks for is checked and executed here, bounded (requests, tool calls, the
run's backtests, timeouts) and logged; an unknown tool or an invalid argument is refused, the reason sent
back to the model as the tool's result. The model then phrases the answer. Its figures can only be the
tools' figures, and the recommendations are the specialists' own, evidence included. When the model
fails, the run falls back to the deterministic path and says so.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from agents.backtest import Backtester, BacktestRunner
from agents.llm import ChatClient, LLMError
from agents.model import Recommendation, RuleProposal, jsonable, to_json
from agents.query import MissingTable, QueryRecord, QueryRunner
from agents.specialists import BY_NAME, SPECIALISTS, Analysis, Specialist
from agents.tools import (
    DECLINE_REASONS,
    NETWORKS,
    QUERY_TOOLS,
    SEGMENTS,
    Toolbox,
    ToolRefused,
    check_arguments,
    object_schema,
)
from payments_core.rules.model import OUTCOMES, Rule

log = logging.getLogger("agents")

RunKind = Literal["specialist", "question", "scheduled"]
GENERALIST = "performance_recommender"  # answers a question no keyword routes
MAX_TOOL_RESULT_CHARS = 16_000
BACKTEST_TOOL = "backtest_rule"


# ------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class RunRequest:
    kind: RunKind
    agent: str | None = None  # kind "specialist"
    question: str | None = None  # kind "question"
    backtest: bool = True  # measure rule candidates with backtests (each is a Spark job)
    arguments: dict[str, Any] | None = None  # the specialist's parameters (kind "specialist")

    def __post_init__(self) -> None:
        if self.kind == "specialist" and self.agent not in BY_NAME:
            raise ValueError(f"unknown agent {self.agent!r}; the agents are: {', '.join(BY_NAME)}")
        if self.kind == "question" and not (self.question or "").strip():
            raise ValueError("a question run needs a question")


@dataclass
class Routing:
    specialists: list[str]
    matched: dict[str, list[str]] = field(default_factory=dict)  # specialist -> keywords found
    filters: dict[str, str] = field(default_factory=dict)  # parameter -> value named in the question
    fallback: bool = False  # nothing matched: the generalist answers

    def as_dict(self) -> dict[str, Any]:
        return {
            "specialists": self.specialists,
            "matched": self.matched,
            "filters": self.filters,
            "fallback": self.fallback,
        }


@dataclass
class RunResult:
    request: RunRequest
    planner: str  # "rules" | "llm"
    agents: list[str]
    answer: str
    recommendations: list[Recommendation]
    transcript: list[dict[str, Any]]
    notes: list[str]
    queries: list[QueryRecord]
    routing: Routing | None = None
    model: str | None = None


# ------------------------------------------------------------------------------------------ routing
_WORD = re.compile(r"[a-z0-9_]+")
_TIER = re.compile(r"\b(low|medium|high)[- ]risk\b|\brisk[- ]tier (low|medium|high)\b")
_SOLUTIONS = {
    "3ds": "3ds",
    "network token": "network_token",
    "network_token": "network_token",
    "network tokens": "network_token",
    "passkey": "passkey",
    "apple pay": "apple_pay",
    "apple_pay": "apple_pay",
    "google pay": "google_pay",
    "google_pay": "google_pay",
}


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def entities(question: str) -> dict[str, str]:
    """Values of the data's vocabularies named in ``question`` (the first of each kind)."""
    words_in_order = _WORD.findall(question.lower().replace("-", " "))
    text = " " + " ".join(words_in_order) + " "
    words = set(words_in_order)
    found: dict[str, str] = {}
    for network in NETWORKS:
        if network in words:
            found.setdefault("card_network", network)
    for segment in SEGMENTS:
        if segment.lower() in words:
            found.setdefault("merchant_segment", segment)
    for reason in DECLINE_REASONS:
        spaced = reason.lower().replace("_", " ")
        if reason.lower() in words or f" {spaced} " in text:
            found.setdefault("decline_reason", reason)
    tier = _TIER.search(question.lower())
    if tier:
        found["risk_tier"] = tier.group(1) or tier.group(2)
    for phrase, solution in _SOLUTIONS.items():
        if f" {phrase} " in text and "decline_reason" not in found:
            found.setdefault("payment_solution", solution)
    return found


def route(question: str) -> Routing:
    """The specialists a question is for (most keywords first), and the filters it names."""
    words = {_stem(w) for w in _WORD.findall(question.lower())}
    matched: dict[str, list[str]] = {}
    for s in SPECIALISTS:
        hits = sorted({k for k in s.keywords if _stem(k) in words})
        if hits:
            matched[s.name] = hits
    filters = entities(question)
    if "risk_tier" in filters and "risk_assessor" not in matched:
        matched["risk_assessor"] = ["risk tier"]
    if "decline_reason" in filters and not ({"decline_analyst", "smart_retry"} & set(matched)):
        matched["decline_analyst"] = ["decline reason"]
    if not matched:
        return Routing([GENERALIST], {}, filters, fallback=True)
    order = sorted(matched, key=lambda n: (-len(matched[n]), [s.name for s in SPECIALISTS].index(n)))
    return Routing(order, matched, filters)


def arguments_for(specialist: Specialist, filters: dict[str, str]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if k in specialist.properties}


# ------------------------------------------------------------------------------------------ answers
def templated_answer(request: RunRequest, agents: list[str], routing: Routing | None, result_recs, notes) -> str:
    titles = ", ".join(BY_NAME[a].title for a in agents)
    if request.kind == "question" and routing is not None:
        how = (
            "no intent keyword matched, so the performance recommender answered"
            if routing.fallback
            else "; ".join(f"{BY_NAME[n].title} ({', '.join(k)})" for n, k in routing.matched.items())
        )
        head = f"Question routed to {titles}: {how}."
        if routing.filters:
            head += " Narrowed to " + ", ".join(f"{k} = {v}" for k, v in routing.filters.items()) + "."
    elif request.kind == "scheduled":
        head = f"Scheduled run of every specialist ({titles})."
    else:
        head = f"{titles} analysis."
    if not result_recs:
        why = " ".join(notes) if notes else "nothing met the specialists' criteria on the current data."
        return f"{head} No recommendation: {why}"
    lines = [f"{head} {len(result_recs)} recommendation(s), highest expected value first:"]
    for i, r in enumerate(result_recs, 1):
        lines.append(f"{i}. {r.title}: {r.text} Expected lift: {r.lift.summary}.")
    return "\n".join(lines)


SYSTEM_PROMPT = """You are the orchestrator of the payment-analysis analyst agents.
Tools: the query tools read the gold layer (the dashboards' tables); each analyze_* tool runs one specialist
(smart routing, smart retry, decline analyst, risk assessor, performance recommender) and records its
recommendations with their evidence; backtest_rule replays a candidate risk or authentication rule against
the live rule set over recent history.
Rules: call only the tools listed, with the arguments their schemas allow. Use only numbers the tools
returned; never estimate or invent a figure. Money is in USD. Recommendations come only from analyze_* tools.
When you have what you need, answer the user in at most 150 words, naming the recommendations and their
expected lift."""


# ------------------------------------------------------------------------------------------ the run
@dataclass
class Orchestrator:
    runner: QueryRunner
    backtest: BacktestRunner | None = None
    llm: ChatClient | None = None
    max_backtests: int = 3
    on_event: Callable[[dict[str, Any]], None] | None = None

    def run(self, request: RunRequest) -> RunResult:
        transcript: list[dict[str, Any]] = []

        def emit(event_kind: str, **data: Any) -> None:
            event = {"at": datetime.now(UTC).isoformat(), **jsonable(data), "event": event_kind}
            transcript.append(event)
            log.info("agent run %s: %s", event_kind, to_json(data)[:500])
            if self.on_event is not None:
                self.on_event(event)

        toolbox = Toolbox(self.runner)
        backtester = Backtester(self.backtest, enabled=request.backtest, max_runs=self.max_backtests, emit=emit)
        analysis = Analysis(toolbox, backtester)
        routing: Routing | None = None
        arguments: dict[str, dict[str, Any]] = {}
        if request.kind == "specialist":
            assert request.agent is not None
            agents = [request.agent]
            arguments[request.agent] = dict(request.arguments or {})
        elif request.kind == "question":
            routing = route(request.question or "")
            agents = routing.specialists
            arguments = {n: arguments_for(BY_NAME[n], routing.filters) for n in agents}
            emit("route", **routing.as_dict())
        else:
            agents = [s.name for s in SPECIALISTS]
            arguments = {n: {} for n in agents}
        emit("start", run_kind=request.kind, agents=agents, question=request.question, backtest=request.backtest)

        recs: list[Recommendation] = []
        planner, model, answer = "rules", None, None
        if self.llm is not None and request.kind != "scheduled":
            model = self.llm.config.model or self.llm.config.url
            try:
                answer, recs, ran = self._plan_with_llm(request, agents, arguments, analysis, emit)
                planner = "llm"
                agents = [s.name for s in SPECIALISTS if s.name in ran] or agents
            except LLMError as exc:
                analysis.notes.append(f"the LLM was not usable ({exc}); answered without it")
                emit("llm_error", message=str(exc))
                recs, answer = [], None
        if planner == "rules":
            for name in agents:
                recs += self._analyze(BY_NAME[name], analysis, arguments.get(name, {}), emit)
        recs = sorted(_unique(recs), key=lambda r: (-r.rank_value, r.agent, r.scope))
        if answer is None:
            answer = templated_answer(request, agents, routing, recs, analysis.notes)
            if self.llm is not None and request.kind == "scheduled" and recs:
                answer = self._phrase(answer, recs, analysis, emit) or answer
        emit("done", recommendations=[r.id for r in recs], planner=planner)
        return RunResult(
            request, planner, agents, answer, recs, transcript, analysis.notes, toolbox.records, routing, model
        )

    # ------------------------------------------------------------------------------ deterministic
    def _analyze(self, specialist: Specialist, analysis: Analysis, args: dict[str, Any], emit) -> list[Recommendation]:
        started = time.perf_counter()
        before = len(analysis.toolbox.records)
        try:
            recs = specialist.run(analysis, args)
        except MissingTable as exc:
            analysis.notes.append(f"{specialist.title}: {exc}")
            emit("analysis", agent=specialist.name, arguments=args, status="error", message=str(exc))
            return []
        except ToolRefused as exc:
            analysis.notes.append(f"{specialist.title}: {exc}")
            emit("analysis", agent=specialist.name, arguments=args, status="refused", message=str(exc))
            return []
        emit(
            "analysis",
            agent=specialist.name,
            arguments=args,
            status="ok",
            queries=[q.as_dict() for q in analysis.toolbox.records[before:]],
            recommendations=[r.id for r in recs],
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return recs

    # ------------------------------------------------------------------------------ with an LLM
    def _tools(self, agents: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """name -> (description, JSON schema) of what the model is offered."""
        offered = {t.name: (t.description, t.schema) for t in QUERY_TOOLS}
        for name in agents:
            s = BY_NAME[name]
            offered[s.tool_name] = (f"{s.title}: {s.description}", s.schema)
        offered[BACKTEST_TOOL] = (BACKTEST_DESCRIPTION, BACKTEST_SCHEMA)
        return offered

    def _plan_with_llm(self, request, agents, arguments, analysis: Analysis, emit) -> tuple[str, list, set[str]]:
        """The model's plan: (answer, recommendations, the specialists it ran). A question is offered every
        specialist (the keyword routing is a hint); a specialist's run, that specialist."""
        assert self.llm is not None
        config = self.llm.config
        offered = self._tools(agents if request.kind == "specialist" else [s.name for s in SPECIALISTS])
        tool_specs = [
            {"type": "function", "function": {"name": n, "description": d, "parameters": p}}
            for n, (d, p) in offered.items()
        ]
        if request.kind == "question":
            hint = {BY_NAME[n].tool_name: arguments.get(n, {}) for n in agents}
            user = (request.question or "") + "\n(The keyword router would run: " + to_json(hint) + ")"
        else:
            s = BY_NAME[agents[0]]
            given = f" with {to_json(arguments[s.name])}" if arguments.get(s.name) else ""
            user = f"Run the {s.title} analysis ({s.tool_name}{given}) and summarise its recommendations."
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
        recs: list[Recommendation] = []
        ran: set[str] = set()
        calls = 0
        answer: str | None = None
        for round_no in range(1, config.max_rounds + 1):
            offer = calls < config.max_tool_calls
            message = self.llm.complete(messages, tool_specs if offer else None)
            tool_calls = message.get("tool_calls") or []
            emit(
                "llm",
                round=round_no,
                tools_offered=offer,
                tool_calls=[(c.get("function") or {}).get("name") for c in tool_calls if isinstance(c, dict)],
                content=(message.get("content") or "")[:2000],
            )
            if not tool_calls:
                answer = (message.get("content") or "").strip() or None
                break
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls})
            for index, item in enumerate(tool_calls):
                call: dict[str, Any] = item if isinstance(item, dict) else {}
                function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
                name, raw = function.get("name"), function.get("arguments")
                call_id = call.get("id") or f"call_{round_no}_{index}"
                started = time.perf_counter()
                if calls >= config.max_tool_calls:
                    budget = f"this run's budget of {config.max_tool_calls} tool calls is used up"
                    status, result = "refused", {"error": f"refused: {budget}; answer with what you have"}
                else:
                    calls += 1
                    status, result = self._execute(name, raw, offered, analysis, recs, ran)
                content = _truncate(to_json(result))
                emit(
                    "tool_call",
                    round=round_no,
                    call_id=call_id,
                    tool=name,
                    arguments=raw if isinstance(raw, str) else to_json(raw),
                    status=status,
                    message=result.get("error") if status != "ok" else None,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    result_chars=len(content),
                )
                messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        if answer is None:
            analysis.notes.append(f"the model gave no final answer within {config.max_rounds} requests")
        if request.kind == "specialist" and request.agent not in ran:
            analysis.notes.append(f"the model did not run {BY_NAME[request.agent].tool_name}; it was run without it")
            recs += self._analyze(BY_NAME[request.agent], analysis, arguments.get(request.agent, {}), emit)
            ran.add(request.agent)
        if answer is None:
            return templated_answer(request, agents, None, recs, analysis.notes), recs, ran
        return answer, recs, ran

    def _execute(self, name, raw, offered, analysis: Analysis, recs: list, ran: set) -> tuple[str, dict[str, Any]]:
        """(status, result) of one tool call the model asked for; refused, never guessed."""
        if not isinstance(name, str) or name not in offered:
            known = ", ".join(sorted(offered))
            return "refused", {"error": f"refused: there is no tool {name!r}; the tools are: {known}"}
        if isinstance(raw, str):
            try:
                args = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return "refused", {"error": f"refused: the arguments of {name} are not valid JSON ({exc})"}
        else:
            args = raw if raw is not None else {}
        try:
            if name == BACKTEST_TOOL:
                return "ok", self._backtest_tool(args, analysis)
            specialist = next((s for s in SPECIALISTS if s.tool_name == name), None)
            if specialist is not None:
                new = specialist.run(analysis, args)
                ran.add(specialist.name)
                recs.extend(new)
                return "ok", {"recommendations": [r.summary() for r in new], "notes": list(analysis.notes)}
            return "ok", analysis.toolbox.for_model(name, args)
        except ToolRefused as exc:
            return "refused", {"error": f"refused: {exc}"}
        except MissingTable as exc:
            return "error", {"error": str(exc)}
        except Exception as exc:  # a tool's own failure goes back to the model; the run goes on
            log.exception("tool %s failed", name)
            return "error", {"error": f"{name} failed: {type(exc).__name__}: {exc}"}

    def _backtest_tool(self, args: Any, analysis: Analysis) -> dict[str, Any]:
        checked = check_arguments(BACKTEST_TOOL, BACKTEST_SCHEMA, args)
        proposal = RuleProposal(
            name=checked["name"],
            type=checked["type"],
            condition=checked["condition"],
            action=checked["action"],
            priority=checked["priority"],
            description="proposed by the LLM planner",
        )
        rule_id = "AGLLM_" + checked["name"].upper().replace(" ", "_")[:20]
        rule_id = re.sub(r"[^A-Za-z0-9_.-]", "", rule_id) or "AGLLM"
        try:
            Rule(**proposal.rule_body(rule_id, shadow=False))
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise ToolRefused(f"the candidate is not a valid rule: {problems}") from None
        return analysis.backtester.lift(proposal, rule_id).as_dict() | {"rule_id": rule_id}

    def _phrase(self, draft: str, recs: list[Recommendation], analysis: Analysis, emit) -> str | None:
        """A scheduled run's summary phrased by the model (no tools: it has the figures already)."""
        assert self.llm is not None
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": "Summarise these recommendations of a scheduled run for a payments team, using only their "
                "figures:\n" + _truncate(to_json([_brief(r) for r in recs])),
            },
        ]
        try:
            message = self.llm.complete(messages)
        except LLMError as exc:
            analysis.notes.append(f"the LLM did not phrase the summary ({exc})")
            emit("llm_error", message=str(exc))
            return None
        emit("llm", round=1, tools_offered=False, tool_calls=[], content=(message.get("content") or "")[:2000])
        return (message.get("content") or "").strip() or None


BACKTEST_DESCRIPTION = (
    "Replay the live rule set plus one candidate rule (risk or authentication) over recent history and compare: "
    "approval rate, fraud caught, false declines, values in USD. Each call is a Spark job."
)
BACKTEST_SCHEMA = object_schema(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "what the rule does"},
        "type": {"type": "string", "enum": ["risk", "authentication"]},
        "condition": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "rule language condition"},
        "action": {"type": "string", "enum": list(OUTCOMES)},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 55},
    }
)
BACKTEST_SCHEMA["required"] = ["name", "type", "condition", "action"]


def _brief(rec: Recommendation) -> dict[str, Any]:
    return {"id": rec.id, "title": rec.title, "text": rec.text, "expected_lift": rec.lift.summary}


def _unique(recs: list[Recommendation]) -> list[Recommendation]:
    seen: dict[str, Recommendation] = {}
    for r in recs:
        seen.setdefault(r.id, r)
    return list(seen.values())


def _truncate(text: str) -> str:
    if len(text) <= MAX_TOOL_RESULT_CHARS:
        return text
    return text[: MAX_TOOL_RESULT_CHARS - 40] + '... (truncated)"'
