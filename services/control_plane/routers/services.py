"""Long-running services on /setup: simulator and stream processor (start, stop, status, rate) and the
simulator's scenario switch. Start and stop go through the backend's ``ServiceControl``."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from payments_core.contract.control import DESCRIPTIONS, SCENARIOS, ScenarioName, ScenarioSwitch
from services.control_plane import audit
from services.control_plane.deps import Admin, BackendDep, DbSession, SettingsDep, Viewer
from services.control_plane.kafka_status import topic_status
from services.control_plane.supervision import MANAGED, RateMeter, publish_scenario, rate_topic

router = APIRouter(tags=["services"])


def _meter(request: Request) -> RateMeter:
    if not hasattr(request.app.state, "rate_meter"):
        request.app.state.rate_meter = RateMeter()
    return request.app.state.rate_meter


@router.get("/api/services")
async def list_services(request: Request, settings: SettingsDep, backend: BackendDep, _user: Viewer) -> dict:
    """The simulator and the stream processor: state (supervisord programs locally, Databricks jobs on
    Databricks), throughput from the topics' watermarks, and the scenarios."""
    kafka = await asyncio.to_thread(topic_status, settings.kafka_bootstrap, settings.topic_prefix, 1.0)
    highs = {t["topic"]: t.get("high_watermark", 0) for t in kafka["topics"] if t.get("exists")}
    rates = _meter(request).update(highs)
    state = await asyncio.to_thread(backend.services.status)
    infos, managed, error = state.infos, state.managed, state.error
    services = []
    for name, (title, _topic) in MANAGED.items():
        topic = rate_topic(name, settings.topic_prefix)
        services.append(
            {
                "name": name,
                "title": title,
                "rate_topic": topic,
                "rate_per_s": round(rates[topic], 1) if topic in rates else None,
                **infos.get(name, {"state": "UNKNOWN", "description": error}),
            }
        )
    return {
        "managed": managed,
        "controlled_by": backend.services.kind,
        "error": error,
        "services": services,
        "scenarios": [{"name": n, "description": DESCRIPTIONS[n]} for n in SCENARIOS],
    }


@router.post("/api/services/{name}/{action}")
async def control_service(
    name: str, action: Literal["start", "stop"], db: DbSession, backend: BackendDep, user: Admin
) -> dict:
    """Start or stop a service (supervisord locally; on Databricks run-now / cancel all runs of its job)."""
    if name not in MANAGED:
        raise HTTPException(404, f"unknown service {name!r}; known: {', '.join(MANAGED)}")
    info = await asyncio.to_thread(backend.services.control, name, action)
    audit.record(db, user.name, f"service.{action}", name, after={"state": info["state"], "by": backend.services.kind})
    return {"name": name, **info}


class ScenarioRequest(BaseModel):
    scenario: ScenarioName
    issuer: str | None = Field(None, max_length=64, description="Issuer id (iss_br_02) or one of its BINs")


@router.post("/api/simulator/scenario")
async def switch_scenario(body: ScenarioRequest, db: DbSession, settings: SettingsDep, user: Admin) -> dict:
    switch = ScenarioSwitch(scenario=body.scenario, issuer=body.issuer or None)
    try:
        await asyncio.to_thread(publish_scenario, settings.kafka_bootstrap, settings.topic_prefix, switch)
    except Exception as exc:  # broker down: say so, nothing was switched
        raise HTTPException(503, f"scenario not switched: {exc}") from None
    audit.record(db, user.name, "simulator.scenario", body.scenario, after=switch.model_dump(mode="json"))
    return switch.model_dump(mode="json")
