"""The one configuration object. Built in each process's ``main``, never at import time.

Every field maps to an environment variable ``STREAMREC_<SECTION>__<FIELD>``; ``.env.example``
lists them all with their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaTopics(BaseModel):
    events: str = "streamrec.events"
    items: str = "streamrec.items"
    dead_letter: str = "streamrec.dead-letter"
    # What serving showed (core.impressions); the consumer stores it and attributes events to it.
    impressions: str = "streamrec.impressions"


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:19092"
    topics: KafkaTopics = Field(default_factory=KafkaTopics)
    group_id: str = "streamrec-consumer"
    # 6 s keeps the first group join short on Tansu and is inside Apache Kafka's allowed range.
    session_timeout_ms: int = 6000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A send with no acknowledgement for this long while the broker answers metadata means the
    # producer lost its idempotence state (e.g. a broker restart): it is rebuilt and the send retried.
    producer_stall_timeout_s: float = Field(default=3.0, gt=0.0, le=300.0)
    producer_stalls_before_rebuild: int = Field(default=1, ge=1, le=100)


class MongoSettings(BaseModel):
    uri: SecretStr = SecretStr("mongodb://127.0.0.1:27018")
    database: str = "streamrec"
    timeout_ms: int = 5000


class RedisSettings(BaseModel):
    url: SecretStr = SecretStr("redis://127.0.0.1:6380/0")
    key_prefix: str = "sr:"
    timeout_s: float = 2.0
    # Redis Cluster: ``url`` names any one node (the client discovers the others) and storage uses
    # redis-py's cluster clients; every server-side script and transaction then touches one slot
    # (the hash tags of ``core.keys``). False: one Redis server, as before.
    cluster: bool = False


class ImpressionSettings(BaseModel):
    """Impression logging (serving) and storage (consumer); see core.impressions."""

    enabled: bool = True
    # Serving encodes each impression on the request and buffers it; every batch_max records, or
    # when the oldest buffered one is linger_s old, the buffer goes to the Kafka client's bounded
    # queue (queue_max records) in one call, and the client's threads send it: the request never
    # waits for Kafka. When the queue is full (Kafka down for long), new impressions are dropped
    # and counted (streamrec_serving_impressions_dropped_total); the answer is served.
    queue_max: int = Field(default=10_000, ge=1, le=10_000_000)
    batch_max: int = Field(default=500, ge=1, le=100_000)
    linger_s: float = Field(default=0.05, ge=0.0, le=10.0)
    # MongoDB keeps impressions this long (a TTL index on ``ts``).
    retention_days: float = Field(default=30.0, gt=0.0, le=3650.0)


class AttributionSettings(BaseModel):
    """How the consumer links clicks, add-to-carts and purchases to what was shown (core.attribution)."""

    # Without an explicit recommendation_id, an event is credited to the most recent impression that
    # showed its item to its shopper at most this long before it.
    window_s: float = Field(default=1800.0, gt=0.0, le=30 * 86400.0)
    event_types: list[str] = Field(default_factory=lambda: ["click", "add_to_cart", "purchase"])


class ConsumerSettings(BaseModel):
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    batch_size: int = Field(default=500, ge=1, le=100_000)
    batch_wait_s: float = Field(default=0.05, ge=0.0, le=60.0)
    recent_max: int = Field(default=100, ge=1, le=10_000)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    # SIGTERM ends the process within this many seconds, committing only what was stored.
    shutdown_grace_s: float = Field(default=10.0, gt=0.0, le=600.0)
    # One dead-letter send waits this long before the batch is retried (the loop stays responsive).
    dead_letter_timeout_s: float = Field(default=5.0, gt=0.0, le=300.0)
    # Kafka static group membership (``group.instance.id``, storage.kafka.static_membership): a
    # restarted consumer with the same id takes its partitions back at once instead of waiting for its
    # dead predecessor's session to expire and the group to rebalance. ``{hostname}`` is replaced by the
    # host name (e.g. ``consumer-{hostname}``: a container keeps its host name across restarts). Every
    # running consumer of a group needs its own id: two consumers on one host need two values. Unset:
    # dynamic membership. A broker that refuses static membership gets a dynamic member (logged).
    instance_id: str | None = Field(default=None, min_length=1, max_length=249)
    # Explicit partition ownership, ``i/n`` (consumer.partition_ownership): this consumer assigns
    # itself every partition p with p % n == i instead of joining the group, so a restart waits for
    # no session timeout or rebalance (the fallback where the broker lacks static membership). Run n
    # consumers with i = 0..n-1; nothing moves a stopped consumer's share. Unset: group membership.
    partitions: str | None = Field(default=None, pattern=r"^\d{1,4}/\d{1,4}$")

    @model_validator(mode="after")
    def _one_assignment_mode(self) -> ConsumerSettings:
        if self.partitions is not None:
            index, count = (int(x) for x in self.partitions.split("/"))
            if count < 1 or index >= count:
                raise ValueError(f"partitions {self.partitions!r}: need n >= 1 and 0 <= i < n (e.g. '0/2')")
            if self.instance_id is not None:
                raise ValueError(
                    "set either partitions (explicit ownership) or instance_id (static membership)"
                )
        return self


class EventWeights(BaseModel):
    """What one event of each type counts in popularity, training and the session (core.event_weights)."""

    view: float = 1.0
    click: float = 1.0
    favorite: float = 2.0
    add_to_cart: float = 3.0
    purchase: float = 5.0
    # A rating of r contributes rate * r.
    rate: float = 1.0


class ModelSettings(BaseModel):
    """Training knobs. The modelling defaults (reg, recency, input weighting) were fitted on validation
    folds of the five shared data sets (the one configuration of a small grid with the best mean and
    worst-case share of each set's best validation NDCG@10; no test figure was read: BENCHMARKS.md,
    "Choosing the defaults"); ``streamrec retrain --tune`` only tunes lightly around them."""

    weights: EventWeights = Field(default_factory=EventWeights)
    factors: int = Field(default=512, ge=2, le=4096)
    # Ridge strength of the closed-form fit of the linear autoencoder.
    reg: float = Field(default=300.0, ge=0.0)
    # The most recent history item weighs (1 + boost) times an old one; the boost halves every
    # recency_half_life items back.
    recency_boost: float = Field(default=6.0, ge=0.0)
    recency_half_life: float = Field(default=4.0, gt=0.0)
    pop_weight: float = Field(default=0.0, ge=0.0)
    diag_correction: bool = True
    # Softmax fine-tuning epochs after the closed-form fit; 0 = closed form only.
    epochs: int = Field(default=0, ge=0, le=1000)
    seed: int = 42
    time_decay_half_life_days: float | None = None
    # How a (user, item) pair's summed event weight enters the model (model.history_weighting): linear
    # = the sum as is (a purchase outweighs a view, repeats add up); binary = 1 for any pair with a
    # positive weight (the quality benchmark's protocol on ratings data); log = 1 + ln(max(sum, 1)), which
    # keeps a purchase above a view but damps long repeat streaks. Training, the gate and serving's
    # fold-in all apply it; the benchmark picks it on validation, so production must be able to match.
    # Binary is the default: at the old reg and recency it beat linear on every shared set's validation
    # folds (by 1% on Amazon to 60% on Taobao), and in 47 of the defaults grid's 60 paired comparisons.
    input_weighting: Literal["linear", "binary", "log"] = "binary"
    # Which timestamp orders a user's history for the recency boost: latest = when the user last touched
    # the item (production's choice: a re-viewed item counts as recent), first = when they first did
    # (the offline protocol's order, which keeps one pair per first interaction).
    history_order: Literal["latest", "first"] = "latest"
    # Exact FAISS search costs ~30 us per 1k items per query; above this catalog size an approximate
    # index (ann_index) is built and its search effort calibrated at build time: the smallest IVF
    # nprobe / HNSW efSearch whose recall@50 vs exact search, on a sample of the model's unit-normalized
    # user vectors, reaches ann_target_recall (1.0 = exhaustive effort).
    exact_search_max_items: int = Field(default=20_000, ge=1)
    # hnsw: HNSW-Flat graph. On the serving benchmark's trained 512-factor model (83k items) it reaches
    # recall@50 0.95 on the lists shoppers are shown at efSearch ~80: 0.49 ms a query on one core,
    # against ~4 ms for IVF-Flat (exact: 7.5 ms), whose lists partition these embeddings (norms
    # spread 100-fold) so badly that it needs nprobe 519 of 1,153. ivf: IVF-Flat, whose build (one
    # k-means on a sample) grows more slowly with the catalog than HNSW's (over 9 minutes at ~1M items
    # on 2 cores), and fast on embeddings that cluster the way IVF partitions.
    ann_index: Literal["ivf", "hnsw"] = "hnsw"
    ann_target_recall: float = Field(default=0.95, gt=0.0, le=1.0)
    # IVF inverted lists; 0 = about 4 * sqrt(items).
    ivf_nlist: int = Field(default=0, ge=0)
    hnsw_m: int = Field(default=32, ge=4, le=256)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    # The upper bound of HNSW's calibrated efSearch (used as is when the target is not reached).
    hnsw_ef_search: int = Field(default=512, ge=8)
    artifact_cache_dir: Path = Path(".artifacts")
    # Cold start (model/content.py): retrain fits a ridge map from catalog metadata to the item
    # embeddings of trained items that have a catalog document, so serving can embed items that have
    # no interactions yet. Skipped when fewer trained items than content_min_items have metadata (the
    # map would be fitted on noise); content_max_words caps the title vocabulary. Cost, measured on
    # ml-latest-small's 9,742 movies (3,705 features) on the 2-core dev machine: 10 s to tune the
    # ridge strength and 2 s to fit, once per retrain (2,000 words: 2,509 features, 5 s and 1 s).
    content_cold_start: bool = True
    content_min_items: int = Field(default=20, ge=2)
    content_max_words: int = Field(default=5000, ge=0, le=100_000)
    # How the map's item-embedding part is fitted (model/content_ranking.py): "ridge" alone;
    # "ranking": the ridge map refined on a softmax over the warm items of each training pair's
    # shopper (the score a new item is ranked by), at most content_rank_steps steps of 1,024 pairs;
    # "auto" (default): both fitted on the trained items less a random fifth, and whichever ranks that
    # fifth better for its shoppers (their vectors without it) is kept. The refinement helps where the
    # metadata is text and hurt where it is one category id (BENCHMARKS.md, "Cold start from catalog
    # content", where "auto" is measured). It costs one more ridge fit and up to two refinements per
    # retrain; "ridge" is the cheap choice.
    content_fit: Literal["ridge", "ranking", "auto"] = "auto"
    content_rank_steps: int = Field(default=1000, ge=0, le=100_000)
    # Put a new item's score on the trained items' scale (model.content_ranking.score_scale, measured
    # on the held-out fifth): serving merges new and trained items into one list by score, and a map
    # whose scores run large (the refinement's softmax stretches them) fills the list with new items.
    # Only ever scales down. With "ridge" or "ranking" it costs the held-out fit "auto" already makes.
    # A refined map whose scores have drifted from the trained ones (its softmax ignores a shift shared
    # by all items) gets the floor, 0.001: its new items then seldom enter a merged list (README).
    content_calibrate: bool = True
    # The shopper attribute (PUT /v1/users/{user_id}) whose values are segments: retrain computes
    # popularity per value and serves it to shoppers without history when it beats global popularity
    # on validation (model.segment_popularity). A MongoDB field name: the item-property key rule.
    segment_attribute: str = Field(
        default="segment",
        min_length=1,
        max_length=64,
        pattern=r"^[^$.\x00-\x1f\x7f-\x9f][^.\x00-\x1f\x7f-\x9f]*$",
    )
    # A segment gets its own list only with this many training shoppers: fewer is noise, and a list
    # of one or two people's items would describe identifiable shoppers.
    segment_min_users: int = Field(default=20, ge=1)


class RetrainSettings(BaseModel):
    window_days: float | None = None
    # The window is read from MongoDB in consecutive time slices of this length, one query each
    # (retrain.event_source.read_window): no query's result or cursor spans the whole window.
    read_slice_hours: float = Field(default=6.0, gt=0.0, le=24.0 * 366)
    every: str | None = None
    after_events: int | None = Field(default=None, ge=1)
    gate_tolerance: float = Field(default=0.005, ge=0.0)
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    # Below either minimum the gate's figures are noise: the candidate is published "not judged" and the
    # champion kept. 50 users puts the standard error of a mean NDCG@10 at roughly +-0.03, the order of
    # the differences the gate decides on; 200 events is 4 held-out interactions per such user.
    gate_min_users: int = Field(default=50, ge=1)
    gate_min_events: int = Field(default=200, ge=1)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    # `retrain --tune` (retrain.tuning): a seeded Optuna search over the modelling settings on the
    # store's own recent events, so a storefront without a data scientist still gets a tuned model.
    # tune_every ("24h", "7d"): the retrain loop tunes again once the latest tuned config is this old
    # (None: only when asked). The search stops starting trials after tune_budget_s (a trial in flight
    # finishes) or after tune_trials trials, whichever comes first.
    tune_every: str | None = None
    tune_budget_s: float = Field(default=900.0, gt=0.0, le=7 * 86400.0)
    tune_trials: int = Field(default=40, ge=1, le=10_000)


class ExperimentSettings(BaseModel):
    """A/B tests and shadow evaluation in serving (core.experiments)."""

    # How often serving re-reads the experiments from MongoDB (a change applies within this).
    poll_s: float = Field(default=2.0, gt=0.0, le=3600.0)
    # A registered model version to run in shadow beside the champion; None = no shadow.
    shadow_version: str | None = None
    # The fraction of live requests for which the shadow model's list is computed (off the request path).
    shadow_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    # Shadow lists waiting to be computed; more are skipped (counted), never waited for.
    shadow_queue_max: int = Field(default=1000, ge=1)


class SurfaceExclusion(BaseModel):
    """What one read surface leaves out for a known shopper (request options may override it)."""

    purchased: bool = True
    # Items the shopper interacted with recently (see ExclusionSettings.recent_window_s).
    recent: bool = True


class SimilarExclusion(SurfaceExclusion):
    # "More like this" on a product page: a shopper comparing items expects to see the ones they
    # just looked at again, but not what they already bought.
    recent: bool = False


class ExclusionSettings(BaseModel):
    """Product policy: lists do not repeat what the shopper just did or already bought.

    A "recently viewed" widget is a different surface (``GET /v1/users/{id}/recent``)."""

    recommendations: SurfaceExclusion = Field(default_factory=SurfaceExclusion)
    similar: SurfaceExclusion = Field(default_factory=SimilarExclusion)
    # An interaction is recent while it is at most this old by the serving clock (the shopper's
    # current session); 0 = any age. Either way only the newest ``recent_events`` interactions count
    # (Redis keeps the newest consumer.recent_max per shopper).
    recent_window_s: float = Field(default=1800.0, ge=0.0)
    recent_events: int = Field(default=20, ge=1, le=10_000)


class TrendingSettings(BaseModel):
    """``GET /v1/trending``: growth of the short window's rate against the long window's (core.trending)."""

    short_window: Literal["1h", "7d"] = "1h"
    long_window: Literal["1h", "7d"] = "7d"
    # Weighted (core.event_weights), decayed interactions an item needs in the short window to trend.
    min_count: float = Field(default=5.0, ge=0.0)
    # Weighted interactions assumed over the long window on top of the real ones, so a few clicks on an
    # item without history do not read as huge growth (and growth is never a division by zero).
    prior_count: float = Field(default=10.0, gt=0.0)


class NewArrivalsSettings(BaseModel):
    """``GET /v1/new``: recently added catalog items (core.keys ``added``)."""

    # Items first seen longer ago than this are not new.
    max_age_days: float = Field(default=30.0, gt=0.0)
    # Personalised lists (user_id given) choose their embedded items among this many newest ones.
    pool: int = Field(default=200, ge=1, le=10_000)


class ServingSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys_read: list[SecretStr] = Field(default_factory=list)
    api_keys_ingest: list[SecretStr] = Field(default_factory=list)
    api_keys_admin: list[SecretStr] = Field(default_factory=list)
    public_read: bool = True
    cache_ttl_s: int = Field(default=300, ge=0)
    model_poll_s: float = Field(default=5.0, gt=0)
    max_k: int = Field(default=200, ge=1)
    max_batch: int = Field(default=500, ge=1)
    # POST /v1/events and PUT /v1/items answer 503 when Kafka has not acknowledged within this time.
    ingest_timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    session_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    recent_events_for_session: int = Field(default=20, ge=1)
    exclusion: ExclusionSettings = Field(default_factory=ExclusionSettings)
    # The demo storefront at /demo (serving/demo_page.py): off in production, on for `streamrec demo`.
    demo_page: bool = False
    # Items the model has no embedding for (new in the catalog, no interactions at its training) get a
    # content embedding (serving/cold_start.py) searched exactly beside the main index on every request;
    # the newest this many are kept. Measured on the 2-core dev machine under load (dim 513): 1.4 ms a
    # query at 5,000 items, 4.6 ms at 10,000. 0 turns cold start off.
    cold_start_max_items: int = Field(default=5_000, ge=0, le=200_000)
    impressions: ImpressionSettings = Field(default_factory=ImpressionSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    trending: TrendingSettings = Field(default_factory=TrendingSettings)
    new: NewArrivalsSettings = Field(default_factory=NewArrivalsSettings)
    # How often serving reads catalog changes (serving.catalog) and the merchandising rules: a
    # catalog update or rule change reaches answers within about this long.
    catalog_poll_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    # After SIGTERM: open connections get this long to finish, then the app's clean-up gets as long
    # again before the process exits anyway, logging every thread's stack (serving/bounded_shutdown.py).
    # Keep the two together under the orchestrator's grace period (Kubernetes: 30 s by default).
    shutdown_grace_s: float = Field(default=10.0, gt=0.0, le=300.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_",
        env_nested_delimiter="__",
        # `streamrec devstack up` writes the URLs of the servers it started to .devstack/stack.env;
        # real environment variables always win over both files.
        env_file=(".devstack/stack.env", ".env"),
        env_file_encoding="utf-8",
        # Ignored, not refused: variables of other programs sharing the prefix, and the tooling's own
        # (STREAMREC_DEVSTACK__*, tooling.settings), which a production process may find in .env.
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    log_level: str = "INFO"
