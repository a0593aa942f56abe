"""Automatic pipelining of Redis commands (like ioredis' ``enableAutoPipelining``).

Every command issued during one turn of the event loop goes to Redis in ONE pipeline: one socket
write and one read for all of them, whatever the number of concurrent requests. A socket write costs
tens of microseconds of system time here, as much as the rest of the Redis client per command, so at
saturation this is what keeps Redis from dominating ``POST /score``; at low load a request still
makes exactly one round trip.

``call(*args)`` awaits the reply of one command; ``send(*args)`` queues a command whose reply nobody
waits for (the decision write-behind), reporting errors to ``on_error``. Replies are Redis's own (as
``EVALSHA`` returns them: no redis-py response callbacks, so ``SET`` answers ``b"OK"``, not True).

The batch is packed by hiredis in C, not through redis-py's ``Pipeline`` (whose Python packing and
bookkeeping cost about as much again per command: ~39 against ~19 µs of client CPU per velocity call,
batches of 16). For a plain TCP or Unix-socket Redis it goes out on the pipeline's own connection
(``RedisLink``, an asyncio protocol): one ``transport.write`` per batch, and the replies parsed by
hiredis as the bytes arrive, in order, straight into their waiters. Through redis-py's pooled
connection a batch cost a task, a pool checkout and, per reply, a read with its own timeout context:
per-batch costs that a busy server shares between many requests but a request at moderate load pays
alone, two or three times (docs/performance.md). Anything else (TLS, a credential provider, RESP3)
goes through one connection of the client's pool as before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError

log = logging.getLogger(__name__)


Waiter = asyncio.Future | Callable[[Any], None] | None


def link_params(client: Any) -> dict[str, Any] | None:
    """Where and how ``RedisLink`` connects for ``client`` (a ``redis.asyncio.Redis``), or None when
    its connections need what only redis-py does (TLS, a credential provider, RESP3)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if kwargs.get("credential_provider") is not None or str(kwargs.get("protocol") or 2) != "2":
        return None
    kind = pool.connection_class.__name__
    if kind == "Connection":
        where: dict[str, Any] = {"host": kwargs.get("host", "localhost"), "port": int(kwargs.get("port", 6379))}
    elif kind == "UnixDomainSocketConnection":
        where = {"path": kwargs["path"]}
    else:
        return None
    return {
        **where,
        "db": int(kwargs.get("db") or 0),
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "connect_timeout": kwargs.get("socket_connect_timeout") or 5.0,
        "stall_timeout": kwargs.get("socket_timeout"),
    }


class RedisLink(asyncio.Protocol):
    """The auto-pipeline's own connection: commands written as hiredis-packed bytes, replies parsed
    as they arrive and handed, in order, to the waiter of each command. An error reply fails its own
    command only; a lost connection, a protocol error or a Redis silent for ``stall_timeout`` with
    commands outstanding fails every outstanding command (``ConnectionError``) and the next batch
    opens a new connection."""

    def __init__(self, stall_timeout: float | None):
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: collections.deque[Waiter] = collections.deque()
        self.stall_timeout = stall_timeout
        self.last_reply = 0.0
        self.closed = False
        self._watch: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, params: dict[str, Any]) -> RedisLink:
        loop = asyncio.get_running_loop()
        if "path" in params:
            connect = loop.create_unix_connection(lambda: cls(params["stall_timeout"]), params["path"])
        else:
            connect = loop.create_connection(lambda: cls(params["stall_timeout"]), params["host"], params["port"])
        _, link = await asyncio.wait_for(connect, params["connect_timeout"])
        hello: list[tuple[Any, ...]] = []
        if params["password"] is not None:
            user = (params["username"],) if params["username"] else ()
            hello.append(("AUTH", *user, params["password"]))
        if params["db"]:
            hello.append(("SELECT", params["db"]))
        if hello:
            replies = [loop.create_future() for _ in hello]
            link.write([hiredis.pack_command(c) for c in hello], replies)
            try:
                await asyncio.wait_for(asyncio.gather(*replies), params["connect_timeout"])
            except BaseException:
                link.close()
                raise
        return link

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, packed: list[bytes], waiters: Sequence[Waiter]) -> None:
        if not self.waiting:
            self.last_reply = time.monotonic()
        self.waiting.extend(waiters)
        self.transport.write(b"".join(packed))  # type: ignore[union-attr]
        if self.stall_timeout and self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self.stall_timeout, self._check_stall)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._abort(ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                break
            self.last_reply = time.monotonic()
            if waiting:
                _deliver(waiting.popleft(), reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        waiting, self.waiting = self.waiting, collections.deque()
        error = ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection")
        for waiter in waiting:
            _deliver(waiter, error)

    def _check_stall(self) -> None:
        self._watch = None
        if not self.waiting or self.closed:
            return
        silent = time.monotonic() - self.last_reply
        if silent >= self.stall_timeout:  # type: ignore[operator]
            self._abort(ConnectionError(f"Redis did not answer for {silent:.1f} s"))
        else:
            self._watch = asyncio.get_running_loop().call_later(self.stall_timeout - silent, self._check_stall)  # type: ignore[operator]

    def _abort(self, error: Exception) -> None:
        waiting, self.waiting = self.waiting, collections.deque()
        self.close()
        for waiter in waiting:
            _deliver(waiter, error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class AutoPipeline:
    def __init__(self, client: Any, *, max_batch: int = 512):
        self.client = client
        self.max_batch = max_batch
        self._queue: list[tuple[tuple[Any, ...], Waiter]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self._link_params = link_params(client)
        self._link: RedisLink | None = None
        self._connecting: list[tuple[tuple[Any, ...], Waiter]] | None = None
        self._encoder_conn: Any = None
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
        if self._link_params is not None:
            self._flush_link(queue)
            return
        for i in range(0, len(queue), self.max_batch):
            task = asyncio.get_running_loop().create_task(self._execute(queue[i : i + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _flush_link(self, queue: list[tuple[tuple[Any, ...], Waiter]]) -> None:
        if not queue:
            return
        if self._connecting is not None:  # a connection is being opened: the batch goes out on it
            self._connecting.extend(queue)
            return
        link = self._link
        if link is None or not link.usable:
            self._connecting = list(queue)
            task = asyncio.get_running_loop().create_task(self._open_link())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._write(link, queue)

    def _write(self, link: RedisLink, batch: list[tuple[tuple[Any, ...], Waiter]]) -> None:
        packed, waiters = [], []
        for args, waiter in batch:
            try:
                packed.append(hiredis.pack_command(args))
            except TypeError:  # a type hiredis does not pack: redis-py's encoder decides (or refuses)
                try:
                    packed += self._packer().pack_command(*args)
                except Exception as exc:  # refused (e.g. None): this command fails alone
                    _deliver(waiter, exc)
                    continue
            waiters.append(waiter)
        self.batches += 1
        self.commands += len(batch)
        if waiters:
            link.write(packed, waiters)

    def _packer(self) -> Any:
        """A redis-py connection object that is never connected: its encoder packs what hiredis does not."""
        if self._encoder_conn is None:
            pool = self.client.connection_pool
            self._encoder_conn = pool.connection_class(**pool.connection_kwargs)
        return self._encoder_conn

    async def _open_link(self) -> None:
        try:
            link = await RedisLink.open(self._link_params)  # type: ignore[arg-type]
        except (OSError, TimeoutError, RedisError) as exc:
            pending, self._connecting = self._connecting or [], None
            _fail(pending, exc if isinstance(exc, RedisError) else ConnectionError(f"Redis unreachable: {exc!r}"))
            return
        except BaseException:
            pending, self._connecting = self._connecting or [], None
            _fail(pending, ConnectionError("pipeline cancelled"))
            raise
        if self._link is not None:
            self._link.close()
        self._link = link
        pending, self._connecting = self._connecting or [], None
        if pending:
            self._write(link, pending)

    @property
    def link_in_use(self) -> bool:
        """Whether batches go out on the pipeline's own connection (``RedisLink``)."""
        return self._link_params is not None

    def close(self) -> None:
        """Close the pipeline's own connection (what is outstanding fails)."""
        if self._link is not None:
            self._link.close()
            self._link = None

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
        while self._queue or self._scheduled or self._tasks or (self._link is not None and self._link.waiting):
            if self._queue and not self._scheduled:
                self._flush()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0.001 if self._link is not None and self._link.waiting else 0)


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
