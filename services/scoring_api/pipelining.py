"""Automatic pipelining of Redis commands (like ioredis' ``enableAutoPipelining``).

Every command issued during one turn of the event loop goes to Redis in ONE pipeline: one socket
write and one read for all of them, whatever the number of concurrent requests. A socket write costs
tens of microseconds of system time here, as much as the rest of the Redis client per command, so at
saturation this is what keeps Redis from dominating ``POST /score``; at low load a request still
makes exactly one round trip.

``call(*args)`` awaits the reply of one command; ``send(*args)`` queues a command whose reply nobody
waits for (the decision write-behind), reporting errors to ``on_error``. Replies are Redis's own (as
``EVALSHA`` returns them: no redis-py response callbacks, so ``SET`` answers ``b"OK"``, not True).

The batch goes out on one connection of the client's pool, packed by hiredis in C, not through
redis-py's ``Pipeline`` (whose Python packing and bookkeeping cost about as much again per command:
~39 against ~19 µs of client CPU per velocity call, batches of 16).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError

log = logging.getLogger(__name__)


class AutoPipeline:
    def __init__(self, client: Any, *, max_batch: int = 512):
        self.client = client
        self.max_batch = max_batch
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future | Callable[[Any], None] | None]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0
        self.commands = 0

    def call(self, *args: Any) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._enqueue(args, future)
        return future

    def send(self, *args: Any, on_done: Callable[[Any], None] | None = None) -> None:
        """Queue a command; ``on_done(reply_or_exception)`` is called when it is answered."""
        self._enqueue(args, on_done)

    def _enqueue(self, args: tuple[Any, ...], waiter: Any) -> None:
        self._queue.append((args, waiter))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for i in range(0, len(queue), self.max_batch):
            task = asyncio.get_running_loop().create_task(self._execute(queue[i : i + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[tuple[tuple[Any, ...], Any]]) -> None:
        """One pipeline on one connection of the client's pool: the commands packed by hiredis and
        written at once, the replies read in order and handed to their waiters as they come (an error
        reply fails its own command only). A connection that fails before any reply (e.g. Redis
        restarted since it was last used) is replaced and the batch sent once more, as redis-py's
        own pipeline does; a failure later fails what is left of the batch."""
        self.batches += 1
        self.commands += len(batch)
        pool = self.client.connection_pool
        for attempt in (1, 2):
            delivered = 0
            try:
                conn = await pool.get_connection()
            except (RedisError, OSError) as exc:
                _fail(batch, exc)
                return
            try:
                await conn.send_packed_command(_pack(conn, batch))
                for _, waiter in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as exc:
                        reply = exc
                    delivered += 1
                    _deliver(waiter, reply)
                return
            except (RedisError, OSError) as exc:  # the connection failed (timed out, closed, reset)
                await conn.disconnect(nowait=True)
                if attempt == 1 and delivered == 0 and isinstance(exc, ConnectionError):
                    continue
                _fail(batch[delivered:], exc)
                return
            except BaseException:  # cancelled mid-batch: the connection's state is unknown
                await conn.disconnect(nowait=True)
                _fail(batch[delivered:], ConnectionError("pipeline cancelled"))
                raise
            finally:
                await pool.release(conn)

    async def drain(self) -> None:
        """Wait until everything queued so far is answered (shutdown)."""
        while self._queue or self._scheduled or self._tasks:
            if self._queue and not self._scheduled:
                self._flush()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)


def _pack(conn: Any, batch: list[tuple[tuple[Any, ...], Any]]) -> list[bytes]:
    out = []
    for args, _ in batch:
        try:
            out.append(hiredis.pack_command(args))
        except TypeError:  # a type hiredis does not pack: redis-py's encoder decides (or refuses)
            out += conn.pack_command(*args)
    return out


def _fail(batch: list[tuple[tuple[Any, ...], Any]], exc: BaseException) -> None:
    for _, waiter in batch:
        _deliver(waiter, exc)


def _deliver(waiter: Any, reply: Any) -> None:
    if waiter is None:
        if isinstance(reply, Exception):
            log.warning("pipelined Redis command failed: %s", reply)
        return
    if isinstance(waiter, asyncio.Future):
        if waiter.done():
            return
        if isinstance(reply, Exception):
            waiter.set_exception(reply)
        else:
            waiter.set_result(reply)
        return
    try:
        waiter(reply)
    except Exception:  # a callback must not break delivery to the rest of the batch
        log.exception("pipelined Redis callback failed")


async def eval_script(pipeline: AutoPipeline, script: Any, keys: list[Any], args: list[Any]) -> Any:
    """EVALSHA through the pipeline; on NOSCRIPT (Redis restarted or flushed) load it and retry."""
    try:
        return await pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        pass
    except ResponseError as exc:  # replies delivered from a pipeline are generic errors
        if "NOSCRIPT" not in str(exc):
            raise
    await pipeline.client.script_load(script.script)
    return await pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
