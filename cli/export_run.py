"""The work of `streamrec export recommendations`: the serving read side, in this process.

The export builds the app the API serves (``serving.app.create_app`` over ``serving.wiring``'s adapters,
from the same Settings) and runs its lifespan here, so every list comes from the same
``ReadService.recommendations`` with the same model, experiments, exclusion policy, availability and
category rules as ``GET /v1/users/{id}/recommendations``. Two serving settings differ, on purpose:

- impressions are not logged: an exported list is shown later (an e-mail, a push), if at all, and an
  impression now would credit the shopper's next clicks to a list they have not seen;
- the per-user results cache is neither read nor filled (``cache_ttl_s = 0``): a campaign export
  touches every user once, and a cache entry per user would only take Redis memory for its TTL.

Answers computed while Redis was unreachable (``degraded``: without the shopper's recent history)
are not written; the users are counted as left over and a later run (which resumes) exports them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DependencyUnavailable
from core.export_file import Resume, export_line, resume_output
from core.log_context import REQUEST_ID, new_request_id
from core.settings import Settings

# Lines are flushed to the file at least this often (a crash loses at most these, and resume redoes them).
FLUSH_EVERY = 200
# Answer fields an export line keeps (experiment fields only when an experiment answered).
LINE_FIELDS = ("user_id", "items", "model_version", "request_id")
EXPERIMENT_FIELDS = ("experiment_id", "variant", "variant_fallback")


@dataclass
class ExportStats:
    requested: int = 0
    already_done: int = 0
    exported: int = 0
    # Users whose answer was degraded (Redis unreachable): not written, exported by the next run.
    left_over: int = 0
    repaired_bytes: int = 0
    seconds: float = 0.0
    model_version: str | None = None

    @property
    def users_per_s(self) -> float:
        return self.exported / self.seconds if self.seconds > 0 else 0.0


def export_settings(settings: Settings) -> Settings:
    """``settings`` with the two serving differences of an export (see the module docstring)."""
    serving = settings.serving
    impressions = serving.impressions.model_copy(update={"enabled": False})
    return settings.model_copy(
        update={"serving": serving.model_copy(update={"cache_ttl_s": 0, "impressions": impressions})}
    )


def line_of(answer: dict[str, Any]) -> dict[str, Any]:
    line = {name: answer[name] for name in LINE_FIELDS}
    line.update({name: answer[name] for name in EXPERIMENT_FIELDS if answer.get(name) is not None})
    return line


async def _wait_for_model(app: Any, registry: Any, wait_s: float) -> None:
    holder = app.state.holder
    if holder.current is not None:
        return
    champion = await asyncio.to_thread(registry.champion)
    if champion is None:
        raise DependencyUnavailable(
            "no model is published yet (the registry has no champion): nothing to export"
        )
    deadline = time.monotonic() + wait_s
    while holder.current is None:
        if time.monotonic() > deadline:
            why = holder.last_error or "still loading"
            raise DependencyUnavailable(
                f"model version {champion.version} was not loaded within {wait_s:.0f} s: {why}"
            )
        await asyncio.sleep(0.05)


async def run_export(
    settings: Settings,
    out: Path,
    *,
    k: int,
    users: list[str] | None,
    concurrency: int = 16,
    model_wait_s: float = 120.0,
    on_total: Callable[[int], None] = lambda n: None,
    on_done: Callable[[int], None] = lambda n: None,
    adapters: Any = None,
) -> ExportStats:
    """Export ``users`` (None: every user with a stored event) to ``out``, skipping those already in it.
    ``adapters``: serving adapters to use instead of the ones ``serving.wiring`` builds (tests)."""
    from serving.app import create_app
    from serving.service import RecsQuery
    from serving.wiring import open_adapters

    resume: Resume = resume_output(out)
    local = export_settings(settings)
    adapters = adapters if adapters is not None else open_adapters(local)
    # open_adapters builds no impression log for these settings; adapters handed in lose theirs too.
    adapters.impression_log = None
    app = create_app(local, adapters)
    stats = ExportStats(already_done=len(resume.done), repaired_bytes=resume.repaired_bytes)
    async with app.router.lifespan_context(app):
        await _wait_for_model(app, adapters.registry, model_wait_s)
        stats.model_version = app.state.holder.current.version
        if users is None:
            erased = await asyncio.to_thread(adapters.events.erased_users)
            users = [
                u
                for u in await asyncio.to_thread(lambda: list(adapters.events.user_ids()))
                if u not in erased
            ]
        stats.requested = len(users)
        todo = [u for u in users if u not in resume.done]
        stats.already_done = stats.requested - len(todo)
        on_total(len(todo))
        read = app.state.read
        run_id = new_request_id()[:12]
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for n, user_id in enumerate(todo):
            queue.put_nowait((n, user_id))
        started = time.monotonic()
        with out.open("ab") as fh:
            unflushed = 0

            async def worker() -> None:
                nonlocal unflushed
                while True:
                    try:
                        n, user_id = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    # The export's own request ids: one per list, as the API gives (and logs) one.
                    REQUEST_ID.set(f"export-{run_id}-{n}")
                    answer = await read.recommendations(RecsQuery(user_id, k, frozenset(), None))
                    if answer["degraded"]:
                        stats.left_over += 1
                    else:
                        # One write call per line: lines never interleave, a crash can only cut the last.
                        fh.write(export_line(line_of(answer)))
                        stats.exported += 1
                        unflushed += 1
                        if unflushed >= FLUSH_EVERY:
                            fh.flush()
                            unflushed = 0
                    on_done(1)

            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
            fh.flush()
        stats.seconds = time.monotonic() - started
    return stats
