"""The long-running services `make up` supervises (simulator, stream processor), reached through
supervisord's XML-RPC interface on its unix socket; their throughput from Kafka watermarks."""

from __future__ import annotations

import threading
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Producer
from supervisor.xmlrpc import SupervisorTransport

from payments_core.contract.control import CONTROL_KEY, ScenarioSwitch
from payments_core.contract.topics import DECISIONS, SIMULATOR_CONTROL, TRANSACTIONS, prefixed

# service name -> (title, the topic whose growth is its rate)
MANAGED: dict[str, tuple[str, str]] = {
    "simulator": ("Transaction simulator", TRANSACTIONS.name),
    "stream_processor": ("Stream processor", DECISIONS.name),
}


class SupervisorUnavailable(RuntimeError):
    pass


class Supervisor:
    """``group``: the supervisord group of the services (`make up` puts them in ``services``)."""

    def __init__(self, url: str, group: str = "services"):
        self.group = group
        if not url:
            raise SupervisorUnavailable(
                "these services are not supervised here (PA_SUPERVISOR_URL is empty: start the platform with `make up`)"
            )
        if url.startswith("unix://"):
            self.proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, url))
        else:
            self.proxy = xmlrpc.client.ServerProxy(url.rstrip("/") + "/RPC2")

    def info(self, name: str) -> dict:
        try:
            # an XML-RPC struct (typeshed types every XML-RPC reply as any marshallable value)
            raw = cast("dict[str, Any]", self.proxy.supervisor.getProcessInfo(self._qualified(name)))
        except xmlrpc.client.Fault as exc:
            return {"state": "ABSENT", "description": exc.faultString}
        except OSError as exc:
            raise SupervisorUnavailable(f"supervisord is not reachable: {exc}") from None
        return {
            "state": raw["statename"],
            "description": raw["description"],
            "pid": raw["pid"] or None,
            "started_at": raw["start"] or None,
        }

    def start(self, name: str) -> None:
        self._call("startProcess", name)

    def stop(self, name: str) -> None:
        self._call("stopProcess", name)

    def _qualified(self, name: str) -> str:
        return f"{self.group}:{name}" if self.group else name

    def _call(self, method: str, name: str) -> None:
        try:
            getattr(self.proxy.supervisor, method)(self._qualified(name), True)
        except xmlrpc.client.Fault as exc:
            if exc.faultString.startswith(("ALREADY_STARTED", "NOT_RUNNING")):
                return
            raise SupervisorUnavailable(f"{method} {name}: {exc.faultString}") from None
        except OSError as exc:
            raise SupervisorUnavailable(f"supervisord is not reachable: {exc}") from None


@dataclass
class _Sample:
    at: float
    offsets: dict[str, int]


class RateMeter:
    """Messages per second per topic, from the change of high watermarks between two reads."""

    def __init__(self) -> None:
        self._last: _Sample | None = None
        self._rates: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, highs: dict[str, int]) -> dict[str, float]:
        now = time.monotonic()
        with self._lock:
            last = self._last
            if last is not None and now - last.at >= 1.0:
                dt = now - last.at
                self._rates = {t: max(0.0, (h - last.offsets.get(t, h)) / dt) for t, h in highs.items()}
                self._last = _Sample(now, highs)
            elif last is None:
                self._last = _Sample(now, highs)
            return dict(self._rates)


def publish_scenario(bootstrap: str, prefix: str, switch: ScenarioSwitch, timeout: float = 10.0) -> None:
    topic = prefixed(SIMULATOR_CONTROL, prefix)
    errors: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(
        topic,
        switch.model_dump_json().encode(),
        CONTROL_KEY,
        on_delivery=lambda err, _msg: errors.append(err) if err else None,
    )
    if producer.flush(timeout) or errors:
        raise RuntimeError(f"scenario switch not delivered to {topic}: {errors[0] if errors else 'timeout'}")


def rate_topic(name: str, prefix: str) -> str:
    return f"{prefix}{MANAGED[name][1]}"
