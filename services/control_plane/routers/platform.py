"""Platform status: the scoring API's health and the topics' sizes."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter

from services.control_plane.deps import SettingsDep, Viewer
from services.control_plane.kafka_status import topic_status

router = APIRouter(tags=["platform"])


@router.get("/api/platform")
async def platform(settings: SettingsDep, _user: Viewer) -> dict:
    api = {"url": settings.scoring_api_url, "status": "down"}
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            resp = await client.get(f"{settings.scoring_api_url}/health")
            api["status"] = "up" if resp.status_code == 200 else f"http {resp.status_code}"
    except httpx.HTTPError:
        pass
    kafka = await asyncio.to_thread(topic_status, settings.kafka_bootstrap, settings.topic_prefix)
    return {"scoring_api": api, "kafka": kafka, "catalog": settings.catalog, "schema": settings.lakehouse_schema}
