"""The local platform's real servers: Kafka (KRaft), Redis, PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text

from payments_core.contract.topics import TOPICS, prefixed


def test_topics_created_with_explicit_partitions(kafka_bootstrap, kafka_topics):
    meta = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    for spec in TOPICS:
        name = prefixed(spec, kafka_topics)
        assert name in meta.topics, name
        assert len(meta.topics[name].partitions) == spec.partitions


def test_kafka_round_trip_with_consumer_group(kafka_bootstrap, kafka_topics):
    topic = prefixed(TOPICS[0], kafka_topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    marker = uuid.uuid4().hex
    for i in range(20):
        producer.produce(topic, key=f"k{i}", value=f"{marker}:{i}")
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{marker}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    seen = set()
    for _ in range(200):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None and msg.value().decode().startswith(marker):
            seen.add(msg.value().decode())
        if len(seen) == 20:
            break
    consumer.close()
    assert len(seen) == 20


def test_redis_is_real(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("platform:probe", "1", ex=10)
    assert client.incr("platform:probe") == 2
    assert client.info("server")["redis_version"].startswith("7.")


def test_postgres_is_real(postgres_url):
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        version = conn.execute(text("select version()")).scalar_one()
    assert "PostgreSQL 15" in version
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "payment_analysis"
