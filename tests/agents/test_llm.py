"""The LLM path against a local server speaking the OpenAI chat-completions wire format: the model plans
with function calls; every call is executed here or refused (a hallucinated tool, an argument outside its
schema, arguments that are not JSON, calls past the budget) with the reason sent back as the tool result;
the recommendations stay the specialists' own; a failing endpoint falls back to the deterministic path."""

from __future__ import annotations

import json
import time

import pytest

from agents import SPECIALISTS, Orchestrator, RunRequest
from agents.llm import ChatClient, LLMConfig
from tests.agents.llm_stub import chat_stub, tool_call

KEY = "sk-test-key-not-logged"


def client(stub, **limits) -> ChatClient:
    return ChatClient(LLMConfig(endpoint=stub.base_url, model="stub-model", api_key=KEY, **limits))


def tool_events(result) -> list[dict]:
    return [e for e in result.transcript if e["event"] == "tool_call"]


def test_the_model_plans_and_every_call_is_executed_or_refused(reader):
    def reply(request: dict):
        n = sum(1 for m in request["messages"] if m["role"] == "assistant")
        if n == 0:
            return {
                "content": None,
                "tool_calls": [
                    tool_call("lookup_customer_pii", {"customer": "all"}),  # no such tool
                    tool_call("retry_performance", {"decline_reason": "NOT_A_REASON"}),  # outside the vocabulary
                    tool_call("retry_performance", '{"decline_reason": "INSUFFICIENT_FUNDS"'),  # not JSON
                    tool_call("retry_performance", {"decline_reason": "INSUFFICIENT_FUNDS", "limit": 3}),  # no limit
                    tool_call("retry_performance", {"decline_reason": "INSUFFICIENT_FUNDS"}),
                    tool_call("analyze_smart_retry", {"min_retries": 10}),
                ],
            }
        return {"content": "Retry INSUFFICIENT_FUNDS after the advised wait (analyze_smart_retry)."}

    with chat_stub(reply) as stub:
        result = Orchestrator(reader, llm=client(stub)).run(
            RunRequest("question", question="Should we retry insufficient funds declines later?")
        )
    assert result.planner == "llm" and result.model == "stub-model" and result.agents == ["smart_retry"]
    assert result.answer == "Retry INSUFFICIENT_FUNDS after the advised wait (analyze_smart_retry)."

    # what the model was offered: the functions with their JSON schemas, on the chat-completions path
    first = stub.requests[0]
    assert stub.paths == ["/v1/chat/completions", "/v1/chat/completions"]
    assert stub.headers[0]["authorization"] == f"Bearer {KEY}" and first["model"] == "stub-model"
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    analyses = {f"analyze_{s.name}" for s in SPECIALISTS}
    assert analyses | {"retry_performance", "backtest_rule"} <= set(offered)  # a question: the model plans
    hint = first["messages"][1]["content"]
    assert (
        "keyword router would run" in hint and '"analyze_smart_retry": {"decline_reason": "INSUFFICIENT_FUNDS"}' in hint
    )
    assert "INSUFFICIENT_FUNDS" in offered["retry_performance"]["parameters"]["properties"]["decline_reason"]["enum"]
    assert first["messages"][0]["role"] == "system" and "never estimate or invent" in first["messages"][0]["content"]

    # the refusals went back to the model as the tool results, the valid calls' results too
    second = stub.requests[1]
    calls = second["messages"][2]["tool_calls"]
    results = stub.tool_results(second)
    answers = [results[c["id"]] for c in calls]
    assert "there is no tool 'lookup_customer_pii'" in answers[0]["error"]
    assert "'NOT_A_REASON' is not one of" in answers[1]["error"]
    assert "not valid JSON" in answers[2]["error"]
    assert "Additional properties are not allowed ('limit'" in answers[3]["error"]
    assert answers[4]["table"] == "dash_retry_performance" and answers[4]["rows"][0]["decline_reason"] == (
        "INSUFFICIENT_FUNDS"
    )
    assert isinstance(answers[4]["rows"][0]["recovered_value_usd"], str)  # money as a string, never a float
    assert [r["id"] for r in answers[5]["recommendations"]] == [r.id for r in result.recommendations]

    # logged, in order, with their status; only the valid ones ran a query
    events = tool_events(result)
    assert [e["status"] for e in events] == ["refused", "refused", "refused", "refused", "ok", "ok"]
    assert [e["tool"] for e in events][:2] == ["lookup_customer_pii", "retry_performance"]
    assert {q.tool for q in result.queries} == {"retry_performance"} and len(result.queries) == 2

    # the recommendations are the specialist's own, evidence and all
    plain = Orchestrator(reader).run(RunRequest("specialist", agent="smart_retry", arguments={"min_retries": 10}))
    assert [(r.id, r.figures, r.lift.value_usd) for r in result.recommendations] == [
        (r.id, r.figures, r.lift.value_usd) for r in plain.recommendations
    ]
    assert KEY not in json.dumps(result.transcript)


def test_tool_calls_and_requests_are_bounded(reader):
    def reply(request: dict):
        if "tools" not in request:  # the budget is spent: no more tools offered, the model must answer
            return {"content": "Done with what I have."}
        return {"tool_calls": [tool_call("routing_performance", {"card_network": "visa"}) for _ in range(3)]}

    with chat_stub(reply) as stub:
        result = Orchestrator(reader, llm=client(stub, max_tool_calls=4, max_rounds=5)).run(
            RunRequest("question", question="Which routes approve best?")
        )
    statuses = [e["status"] for e in tool_events(result)]
    assert statuses == ["ok"] * 4 + ["refused"] * 2
    refusal = stub.tool_results(stub.requests[2])
    assert any("budget of 4 tool calls is used up" in r.get("error", "") for r in refusal.values())
    assert len(stub.requests) == 3 and "tools" not in stub.requests[2]
    assert result.answer == "Done with what I have." and len(result.queries) == 4

    def endless(request: dict):
        return {"tool_calls": [tool_call("daily_kpis", {"days": 2})]}

    with chat_stub(endless) as stub:
        capped = Orchestrator(reader, llm=client(stub, max_tool_calls=50, max_rounds=3)).run(
            RunRequest("specialist", agent="performance_recommender")
        )
    assert len(stub.requests) == 3
    assert any("no final answer within 3 requests" in n for n in capped.notes)
    # the specialist the run was for is run all the same, and the answer is templated
    assert any("did not run analyze_performance_recommender" in n for n in capped.notes)
    assert capped.recommendations and capped.answer.startswith("Performance recommender analysis.")


def test_a_slow_or_failing_endpoint_falls_back_to_the_deterministic_answer(reader):
    def slow(request: dict):
        time.sleep(5)  # far beyond the 0.3 s timeout; the bound below leaves room for a loaded machine
        return {"content": "too late"}

    with chat_stub(slow) as stub:
        started = time.monotonic()
        result = Orchestrator(reader, llm=client(stub, timeout_s=0.3)).run(
            RunRequest("specialist", agent="smart_routing")
        )
        assert time.monotonic() - started < 4
    assert result.planner == "rules" and result.recommendations
    assert any("no answer from" in n and "within 0.3 s" in n for n in result.notes)
    assert result.answer.startswith("Smart routing analysis.")

    def broken(request: dict):
        return 500, {"error": {"message": "model overloaded"}}

    with chat_stub(broken) as stub:
        result = Orchestrator(reader, llm=client(stub)).run(RunRequest("question", question="Why declines?"))
    assert result.planner == "rules" and any("answered 500" in n for n in result.notes)
    assert [e["event"] for e in result.transcript].count("llm_error") == 1


def test_the_model_may_backtest_only_a_valid_rule(reader):
    def reply(request: dict):
        if len(stub.requests) == 1:
            return {
                "tool_calls": [
                    tool_call(
                        "backtest_rule",
                        {"name": "Big", "type": "risk", "condition": "amount_major >>> 5", "action": "review"},
                    ),
                    tool_call(
                        "backtest_rule",
                        {"name": "Big", "type": "routing", "condition": "amount_major > 5", "action": "route:3ds"},
                    ),
                    tool_call(
                        "backtest_rule",
                        {"name": "Big", "type": "risk", "condition": "amount_major > 5000", "action": "review"},
                    ),
                ]
            }
        return {"content": "No backtest could run here."}

    with chat_stub(reply) as stub:
        result = Orchestrator(reader, llm=client(stub)).run(RunRequest("question", question="Is fraud a problem?"))
    results = list(stub.tool_results(stub.requests[1]).values())
    assert "not a valid rule" in results[0]["error"] and "line 1" in results[0]["error"]
    assert "'routing' is not one of" in results[1]["error"]
    assert results[2]["status"] == "not_run" and "no backtest step" in results[2]["summary"]
    assert [e["status"] for e in tool_events(result)] == ["refused", "refused", "ok"]


def test_a_scheduled_run_is_analysed_deterministically_and_phrased_by_the_model(reader):
    def reply(request: dict):
        assert "tools" not in request
        return {"content": "Summary for the payments team."}

    with chat_stub(reply) as stub:
        result = Orchestrator(reader, llm=client(stub)).run(RunRequest("scheduled", backtest=False))
    assert result.planner == "rules" and result.answer == "Summary for the payments team."
    sent = json.loads(stub.requests[0]["messages"][1]["content"].split("\n", 1)[1])
    assert [s["id"] for s in sent] == [r.id for r in result.recommendations]


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://llm.example/v1", "https://llm.example/v1/chat/completions"),
        ("https://llm.example/v1/chat/completions", "https://llm.example/v1/chat/completions"),
        (
            "https://adb-1.azuredatabricks.net/serving-endpoints/pa-llm/invocations",
            "https://adb-1.azuredatabricks.net/serving-endpoints/pa-llm/invocations",
        ),
    ],
)
def test_endpoint_forms(endpoint, url):
    assert LLMConfig(endpoint=endpoint).url == url
