"""Scoring API fixtures: a real Redis and Kafka (session fixtures), a real MLflow registry (sqlite) with
tiny trained models, and the app under TestClient (lifespan included)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from launcher.topics import ensure_topics
from services.scoring_api.app import create_app
from services.scoring_api.settings import Settings
from tests.payments_core.helpers import mlflow_uri, register_all, train_models

API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("scoring_mlflow")
    uri = mlflow_uri(tmp)
    register_all(uri, tmp / "artifacts", train_models(seed=5, kind="linear"))
    return uri


@pytest.fixture(scope="session")
def api_topics(kafka_bootstrap, kafka_topics) -> str:
    """The contract's topics for the scoring API's tests (the API publishes its decisions)."""
    prefix = f"{kafka_topics}api."
    ensure_topics(kafka_bootstrap, prefix)
    return prefix


@pytest.fixture
def make_settings(redis_url, registry_uri, tmp_path, kafka_bootstrap, api_topics):
    def make(**kw) -> Settings:
        base = dict(
            env="prod",
            api_keys=API_KEY,
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=api_topics,
            redis_url=redis_url,
            redis_prefix=f"t{uuid.uuid4().hex[:8]}",
            mlflow_tracking_uri=registry_uri,
            data_dir=tmp_path,
            refresh_seconds=3600,
        )
        base.update(kw)
        return Settings(**base)

    return make


@pytest.fixture
def client(make_settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings()), headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


@pytest.fixture
def heuristic_client(make_settings) -> Iterator[TestClient]:
    """The app without a model registry (the heuristic decides): for tests of the HTTP behaviour that
    do not depend on the models. No registry means no helper process importing MLflow: seconds less
    per app on a small machine."""
    with TestClient(
        create_app(make_settings(mlflow_tracking_uri=None)), headers={"Authorization": f"Bearer {API_KEY}"}
    ) as c:
        yield c
