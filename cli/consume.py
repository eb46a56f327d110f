"""Commands `streamrec consume` and `streamrec rebuild-cache`."""

from __future__ import annotations

import logging
import time

import typer

from cli.app import app
from cli.context import configure_logging, load_settings
from core.errors import ConfigError, DependencyUnavailable

log = logging.getLogger(__name__)


@app.command("consume")
def consume(
    group_id: str | None = typer.Option(None, help="Consumer group (default STREAMREC_KAFKA__GROUP_ID)."),
) -> None:
    """Join the consumer group and turn events and item updates into MongoDB documents and Redis state.

    Impressions (what serving showed) are stored too, kept STREAMREC_SERVING__IMPRESSIONS__RETENTION_DAYS
    days, and clicks, add-to-carts and purchases (STREAMREC_CONSUMER__ATTRIBUTION__EVENT_TYPES) are
    credited to one: the one their recommendation_id names, else the latest that showed the item to
    the shopper at most STREAMREC_CONSUMER__ATTRIBUTION__WINDOW_S seconds earlier. An impression
    stored after the event (the two topics have no order between them) credits it then.

    Scale out by starting more processes with the same group. SIGTERM/SIGINT finish the current
    batch, commit what was stored and exit 0 within STREAMREC_CONSUMER__SHUTDOWN_GRACE_S seconds
    (a batch still waiting for a sink is left uncommitted and comes again). Outages of MongoDB,
    Redis or Kafka never end the process: it pauses, retries and recovers by itself.
    """
    from confluent_kafka import KafkaException
    from prometheus_client import start_http_server

    from consumer.interpreter import tune_garbage_collector
    from consumer.runner import ConsumerRunner
    from consumer.wiring import open_kafka
    from storage.event_store import MongoEventStore
    from storage.impressions_mongo import MongoImpressionStore
    from storage.mongo_client import open_mongo_client
    from storage.realtime_state import RedisRealtimeState

    settings = load_settings()
    if group_id:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"group_id": group_id})}
        )
    configure_logging(settings.log_level)
    if settings.consumer.metrics_port:
        try:
            start_http_server(settings.consumer.metrics_port)
        except OSError as exc:
            raise DependencyUnavailable(
                f"cannot serve metrics on port {settings.consumer.metrics_port} ({exc}); "
                "set STREAMREC_CONSUMER__METRICS_PORT to a free port or 0"
            ) from None
    # The composition root: every client the consumer uses is built here and handed in.
    mongo = open_mongo_client(settings.mongo)  # one pool for both MongoDB adapters
    db = mongo[settings.mongo.database]
    store, impressions = MongoEventStore(db), MongoImpressionStore(db)
    state = RedisRealtimeState.from_settings(settings.redis)
    try:
        runner = ConsumerRunner(settings, store, state, open_kafka(settings), impressions=impressions)
    except KafkaException as exc:
        raise ConfigError(f"cannot create the Kafka clients, check STREAMREC_KAFKA__*: {exc}") from None
    runner.install_signal_handlers()
    tune_garbage_collector()
    try:
        code = runner.run()
    finally:
        mongo.close()
    raise typer.Exit(code)


@app.command("rebuild-cache")
def rebuild_cache_command(
    prefix: str | None = typer.Option(
        None, help="Redis key prefix to rebuild into (default STREAMREC_REDIS__KEY_PREFIX)."
    ),
    batch_size: int = typer.Option(5000, min=1, help="Events read from MongoDB per batch."),
) -> None:
    """Recompute all Redis state (recent lists, seen/purchased, popularity, catalog) from MongoDB.

    Safe while consumers run: they hold their Redis effects until it ends. Markers only grow and
    applied offsets only move up. Consumers also run it by themselves when Redis comes back empty.
    """
    from pymongo.errors import PyMongoError
    from redis.exceptions import RedisError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from consumer.rebuild import rebuild_cache
    from storage.event_store import MongoEventStore
    from storage.realtime_state import RedisRealtimeState

    settings = load_settings()
    configure_logging(settings.log_level)
    store = MongoEventStore.from_settings(settings.mongo)
    state = RedisRealtimeState.from_settings(settings.redis, prefix=prefix)
    console = Console()
    try:
        total = store.count_events()
        with Progress(
            TextColumn("rebuilding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("events", total=total)
            stats = rebuild_cache(
                settings,
                store,
                state,
                now_s=time.time(),
                batch_size=batch_size,
                on_progress=lambda n: progress.advance(task, n),
                settle_s=2.0,  # consumers may be storing: let an in-flight insert finish
            )
    except PyMongoError as exc:
        raise DependencyUnavailable(f"MongoDB is unavailable: {str(exc).splitlines()[0]}") from None
    except RedisError as exc:
        raise DependencyUnavailable(f"Redis is unavailable: {exc}") from None
    finally:
        store.close()
    console.print(
        f"rebuilt prefix [bold]{state.keys.prefix}[/]: {stats.items} items, {stats.events} events "
        f"in {stats.seconds:.1f}s"
    )
