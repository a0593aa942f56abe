"""A stand-in LLM: a real HTTP server on loopback speaking the OpenAI chat-completions wire format
(``POST /v1/chat/completions``: ``messages``, ``tools``; answers ``choices[0].message`` with ``content``
or ``tool_calls`` whose ``function.arguments`` is a JSON string, as the API sends them).

A test scripts it with ``reply(request_body) -> message | (status, body)``; every request (body and
headers) is recorded for assertions.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], Any]
_ids = itertools.count(1)


def tool_call(name: str, arguments: Any) -> dict[str, Any]:
    """A tool call as the API returns it (arguments serialised to a string unless given as one)."""
    return {
        "id": f"call_{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


def completion(message: dict[str, Any], model: str) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


@dataclass
class ChatStub:
    reply: Reply
    model: str = "stub-model"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    base_url: str = ""

    def tool_results(self, request: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """tool_call_id -> the parsed content of each tool message in a request."""
        return {m["tool_call_id"]: json.loads(m["content"]) for m in request["messages"] if m["role"] == "tool"}


@contextmanager
def chat_stub(reply: Reply, model: str = "stub-model") -> Iterator[ChatStub]:
    stub = ChatStub(reply, model)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            stub.requests.append(body)
            stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            stub.paths.append(self.path)
            if self.path != "/v1/chat/completions":
                status, answer = 404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}}
            else:
                out = stub.reply(body)
                status, answer = out if isinstance(out, tuple) else (200, completion(out, stub.model))
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="chat-stub")
    thread.start()
    stub.base_url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
