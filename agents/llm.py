"""An LLM endpoint speaking the OpenAI chat-completions wire format, over httpx (no SDK).

``PA_LLM_ENDPOINT`` is either an OpenAI-compatible base URL (``https://api.example.com/v1``: requests go to
``<base>/chat/completions``), a full ``.../chat/completions`` URL, or a Databricks serving endpoint's
``https://<workspace>/serving-endpoints/<name>/invocations`` (same body, same answer). The key is sent as
``Authorization: Bearer``; it is never logged.

Every request has a timeout; an error, a timeout or an answer that is not a chat completion raises
:class:`LLMError`, and the caller answers without the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("agents.llm")


class LLMError(Exception):
    """The endpoint failed, timed out or answered something that is not a chat completion."""


@dataclass(frozen=True)
class LLMConfig:
    endpoint: str
    model: str = ""
    api_key: str = ""
    timeout_s: float = 30.0
    max_rounds: int = 6  # chat requests in one run
    max_tool_calls: int = 12  # tool calls executed in one run

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        if base.endswith(("/chat/completions", "/invocations")):
            return base
        return base + "/chat/completions"

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "model": self.model or None,
            "timeout_s": self.timeout_s,
            "max_rounds": self.max_rounds,
            "max_tool_calls": self.max_tool_calls,
        }


class ChatClient:
    """One chat-completions endpoint."""

    def __init__(self, config: LLMConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._transport = transport

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The assistant message of one completion (``content`` and/or ``tool_calls``)."""
        body: dict[str, Any] = {"messages": messages, "temperature": 0}
        if self.config.model:
            body["model"] = self.config.model
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        started = time.perf_counter()
        try:
            with httpx.Client(timeout=self.config.timeout_s, transport=self._transport) as client:
                resp = client.post(self.config.url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise LLMError(f"no answer from {self.config.url} within {self.config.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"{self.config.url}: {type(exc).__name__}: {exc}") from None
        elapsed = time.perf_counter() - started
        if resp.status_code != 200:
            raise LLMError(f"{self.config.url} answered {resp.status_code}: {resp.text[:300]}")
        try:
            data = resp.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"{self.config.url} did not answer with a chat completion: {resp.text[:300]}") from None
        if not isinstance(message, dict):
            raise LLMError(f"{self.config.url}: the completion's message is not an object")
        log.info(
            "llm %s answered in %.2f s: %d tool call(s)",
            self.config.url,
            elapsed,
            len(message.get("tool_calls") or []),
        )
        return message
