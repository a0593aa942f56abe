"""Platform status: the scoring API's health, the topics' sizes, and the backend in use."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter

from services.control_plane.deps import BackendDep, SettingsDep, Viewer
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
    return {
        "scoring_api": api,
        "kafka": kafka,
        "catalog": settings.catalog,
        "schema": settings.lakehouse_schema,
        "backend": settings.backend,
    }


@router.get("/api/backend")
async def backend_info(backend: BackendDep, _user: Viewer, check: bool = False) -> dict:
    """Where steps, services, models, decisions and rules go, and what is not configured; ``check``
    also asks the workspace who the control plane is (Databricks)."""
    return await asyncio.to_thread(backend.info, check)
