"""AutoPipeline and the decision store's script against a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis.asyncio
from redis.exceptions import ConnectionError, ResponseError

from launcher import local
from payments_core.samples import EXAMPLE_REQUEST
from payments_core.velocity import AsyncRedisVelocityStore
from services.scoring_api.app import create_app
from services.scoring_api.pipelining import AutoPipeline, eval_script, link_params
from services.scoring_api.store import EXISTS, OUTBOX_FULL, STORE_LUA, STORED, DecisionStore, fingerprint, pack, unpack

from .conftest import API_KEY


def run(coro):
    return asyncio.run(coro)


def test_commands_of_one_loop_turn_share_one_pipeline(redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(redis_url)
        pipe = AutoPipeline(client)
        ns = uuid.uuid4().hex
        replies = await asyncio.gather(*(pipe.call("INCRBY", f"{ns}:n", i) for i in range(1, 51)))
        assert sorted(replies) == sorted(set(replies)) and max(replies) == sum(range(1, 51))
        assert (pipe.batches, pipe.commands) == (1, 50)
        # one failing command fails alone
        await client.set(f"{ns}:s", "text")
        ok, bad = await asyncio.gather(
            pipe.call("GET", f"{ns}:n"), pipe.call("INCR", f"{ns}:s"), return_exceptions=True
        )
        assert ok == str(sum(range(1, 51))).encode()
        assert isinstance(bad, ResponseError)
        await client.aclose()

    run(main())


def test_the_pipeline_connects_as_the_url_says_user_password_and_database(redis_url):
    async def main():
        admin = redis.asyncio.Redis.from_url(redis_url)
        user, ns = f"pipe{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        await admin.execute_command("ACL", "SETUSER", user, "on", ">s3cret", "~*", "+@all")
        base = redis_url.rsplit("/", 1)[0].replace("redis://", f"redis://{user}:s3cret@")
        pipe = AutoPipeline(redis.asyncio.Redis.from_url(f"{base}/3"))
        assert pipe.link_in_use  # its own connection, not redis-py's pool
        assert await pipe.call("SET", f"{ns}:k", "v") == b"OK"
        assert await pipe.call("ACL", "WHOAMI") == user.encode()
        assert await admin.get(f"{ns}:k") is None  # database 0
        assert await redis.asyncio.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3").get(f"{ns}:k") == b"v"
        wrong = AutoPipeline(redis.asyncio.Redis.from_url(redis_url.replace("redis://", f"redis://{user}:nope@")))
        with pytest.raises(ResponseError, match="WRONGPASS"):
            await wrong.call("PING")
        # TLS or a credential provider: redis-py's own connections, as before
        assert link_params(redis.asyncio.Redis.from_url("rediss://localhost:6390/0")) is None
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()

    run(main())


def test_a_killed_connection_fails_what_was_outstanding_and_the_next_command_reconnects(redis_url):
    async def main():
        admin = redis.asyncio.Redis.from_url(redis_url)
        pipe = AutoPipeline(redis.asyncio.Redis.from_url(redis_url))
        assert await pipe.call("CLIENT", "SETNAME", "pipeline-under-test") == b"OK"
        blocked = pipe.call("BLPOP", f"{uuid.uuid4().hex}:empty", 10)
        await asyncio.sleep(0.1)
        assert await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(blocked, 5)
        assert await pipe.call("PING") == b"PONG"
        await pipe.drain()
        pipe.close()
        await admin.aclose()

    run(main())


def test_a_silent_redis_fails_outstanding_commands_after_the_socket_timeout_then_recovers(tmp_path):
    with local.redis(tmp_path) as url:

        async def main():
            client = redis.asyncio.Redis.from_url(url, socket_timeout=0.3)
            pid = (await client.info("server"))["process_id"]
            pipe = AutoPipeline(client)
            assert await pipe.call("PING") == b"PONG"
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.perf_counter()
                with pytest.raises(ConnectionError, match="did not answer"):
                    await asyncio.wait_for(pipe.call("PING"), 5)
                assert time.perf_counter() - started < 2.5
            finally:
                os.kill(pid, signal.SIGCONT)
            assert await pipe.call("PING") == b"PONG"
            pipe.close()
            await client.aclose()

        run(main())


def test_eval_script_reloads_a_flushed_script(redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(redis_url)
        store = AsyncRedisVelocityStore(client, prefix=f"t{uuid.uuid4().hex[:6]}:vel")
        pipe = AutoPipeline(client)
        tx = {
            "transaction_id": "txn_00000000000000a1",
            "event_timestamp": "2026-01-01T00:00:00Z",
            "amount_minor": 500,
            "card_token_id": "c1",
            "device_fingerprint": "d1",
            "merchant_id": "m1",
        }
        await client.script_flush()
        keys, args = store.lookup_keys_args("nokey:" + uuid.uuid4().hex, tx)
        stored, features = store.parse_lookup(await eval_script(pipe, store.script, keys, args))
        assert stored is None and features["card_txn_count_600s"] == 0
        later = {**tx, "transaction_id": "txn_00000000000000a2", "event_timestamp": "2026-01-01T00:01:00Z"}
        keys, args = store.lookup_keys_args("nokey", later)
        _, features = store.parse_lookup(await eval_script(pipe, store.script, keys, args))
        assert features["card_txn_count_600s"] == 1 and features["card_amount_minor_600s"] == 500
        await client.aclose()

    run(main())


def test_a_decision_is_stored_with_its_fingerprint_and_outboxed_once(redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(redis_url)
        store = DecisionStore(client, prefix=f"t{uuid.uuid4().hex[:6]}", ttl_seconds=60)
        script = client.register_script(STORE_LUA)
        outbox = f"{store.prefix}:outbox:me"
        fp = fingerprint(dict(EXAMPLE_REQUEST))
        assert fp == fingerprint({**EXAMPLE_REQUEST, "event_timestamp": EXAMPLE_REQUEST["event_timestamp"]})
        pipe = AutoPipeline(client)
        first = await eval_script(pipe, script, [store.key("txn_a"), outbox], [pack(fp, b"{1}"), 60, b"m1", 1, 10])
        again = await eval_script(pipe, script, [store.key("txn_a"), outbox], [pack(fp, b"{2}"), 60, b"m2", 2, 10])
        assert first == [STORED] and again[0] == EXISTS and unpack(again[1]) == (fp, b"{1}")
        assert await client.zrange(outbox, 0, -1) == [b"m1"]  # the loser is not published
        assert await store.get("txn_a") == b"{1}"  # readers get the decision without the fingerprint
        assert 0 < await client.ttl(store.key("txn_a")) <= 60
        await client.set(store.key("txn_s"), b"{stream}")  # consumed from the topic: no fingerprint
        assert unpack(await client.get(store.key("txn_s"))) == (None, b"{stream}")
        full = await eval_script(pipe, script, [store.key("txn_b"), outbox], [pack(fp, b"{3}"), 60, b"m3", 3, 1])
        assert full == [OUTBOX_FULL] and await client.get(store.key("txn_b")) is None
        await client.aclose()

    run(main())


@pytest.mark.parametrize("concurrency", [1, 20])
def test_concurrent_rescoring_returns_one_decision(make_settings, concurrency):
    """Re-scores racing the first request (same worker) all answer the first decision."""

    async def main():
        app = create_app(make_settings())
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"X-API-Key": API_KEY}) as c:
                body = {**EXAMPLE_REQUEST, "transaction_id": "txn_" + uuid.uuid4().hex[:16]}
                rs = await asyncio.gather(*(c.post("/score", json=body) for _ in range(concurrency)))
                again = await c.post("/score", json=body)
                fetched = await c.get(f"/decisions/{body['transaction_id']}")
        assert {r.status_code for r in rs} == {200}
        assert len({r.content for r in rs}) == 1
        assert again.content == rs[0].content and again.headers["idempotent-replay"] == "true"
        assert fetched.content == rs[0].content

    run(main())


def test_the_fingerprint_of_an_instant_before_year_one_in_utc_is_defined_and_offset_free():
    # 0001-01-01T00:00:00+00:12 is valid for the contract but lies before year 1 in UTC, where
    # datetime.astimezone overflows (the OpenAPI fuzz test found it as a 500 of /score/batch)
    plus_12 = datetime(1, 1, 1, tzinfo=timezone(timedelta(minutes=12)))
    same_instant = datetime(1, 1, 1, 0, 12, tzinfo=timezone(timedelta(minutes=24)))
    a_minute_later = datetime(1, 1, 1, 0, 1, tzinfo=timezone(timedelta(minutes=12)))
    fp = fingerprint({**EXAMPLE_REQUEST, "event_timestamp": plus_12})
    assert fp == fingerprint({**EXAMPLE_REQUEST, "event_timestamp": same_instant})
    assert fp != fingerprint({**EXAMPLE_REQUEST, "event_timestamp": a_minute_later})
