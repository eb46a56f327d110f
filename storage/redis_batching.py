"""Coalesce the Redis commands that concurrent requests issue into one pipeline round trip.

Under load, every request a serving process is working on asks Redis for its user's state at about
the same moment. Sending each request's commands on its own costs a connection checkout, a socket
write, a read wake-up and the client library's per-call bookkeeping, which on a small core costs more
than the recommendation itself. ``CommandBatcher`` queues the commands submitted during one turn of the
event loop and sends them as one non-transactional pipeline at the end of that turn; each caller gets
its own reply (or its own error) back. Nothing waits for a batch to fill, so an idle server adds no
latency: a lone request is flushed in the same loop turn it was submitted.

Commands are sent as single-word command names with their arguments (``"GET", key``), packed by
hiredis; replies are returned raw (bytes, ints, lists), without redis-py's per-command callbacks.
Lua scripts go through EVALSHA; when Redis answers NOSCRIPT (first use, restart, SCRIPT FLUSH) the
script is loaded and only those commands are sent again.

On Redis Cluster the batch goes through redis-py's cluster pipeline instead: it groups the commands by
their slot's primary and sends one pipeline to each, concurrently (one round trip per primary that
the batch touches, redirections followed); every command must keep to one slot, which the hash tags
of ``core.keys`` give the per-user script.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from storage.redis_clients import is_cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LuaScript:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # Redis names scripts by the SHA1 of their source.
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass
class _Pending:
    args: tuple[Any, ...]
    script: LuaScript | None
    future: asyncio.Future[Any] | None  # None: fire and forget


class CommandBatcher:
    def __init__(self, client: Any, timeout_s: float, max_batch: int = 512) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.cluster = is_cluster(client)
        self.batches = 0
        self.commands = 0

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future resolves to its reply or raises its error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(args, None, future))
        return future

    def submit_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(("EVALSHA", script.sha, len(keys), *keys, *args), script, future))
        return future

    def submit_nowait(self, *args: Any) -> None:
        """Queue a write whose outcome nobody waits for (a cache fill): failures are only logged."""
        self._enqueue(_Pending(args, None, None))

    def _enqueue(self, pending: _Pending) -> None:
        self._queue.append(pending)
        if len(self._queue) >= self.max_batch:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._execute(batch)
                missing = [i for i, reply in enumerate(replies) if _is_noscript(reply)]
                if missing:
                    await self._load_scripts({batch[i].script for i in missing if batch[i].script})
                    retried = await self._execute([batch[i] for i in missing])
                    for i, reply in zip(missing, retried, strict=True):
                        replies[i] = reply
        except BaseException as exc:  # connection errors, timeouts, cancellation: every caller hears
            for pending in batch:
                _fail(pending, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                _fail(pending, reply)
            elif pending.future is not None and not pending.future.done():
                pending.future.set_result(reply)

    async def _execute(self, batch: list[_Pending]) -> list[Any]:
        """One write of all commands (packed by hiredis, in C) and one read loop on one pooled
        connection. Per-read timers are off (``timeout=inf``): the whole batch has one timeout, and a
        connection left mid-reply by it (or by any failure) is closed rather than reused."""
        if self.cluster:
            pipe = self.client.pipeline(transaction=False)
            for pending in batch:
                pipe.execute_command(*pending.args)
            return list(await pipe.execute(raise_on_error=False))
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join(hiredis.pack_command(p.args) for p in batch))
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:  # an error reply: that command's, the stream is intact
                    replies.append(exc)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies

    async def _load_scripts(self, scripts: set[LuaScript | None]) -> None:
        for script in scripts:
            if script is not None:
                await self.client.script_load(script.source)

    async def aclose(self) -> None:
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _fail(pending: _Pending, exc: BaseException) -> None:
    if pending.future is None:
        log.debug("event=redis_write_failed command=%s error=%s", pending.args[0], exc)
    elif pending.future.done():
        return
    elif isinstance(exc, Exception):
        pending.future.set_exception(exc)
    else:
        pending.future.cancel()
