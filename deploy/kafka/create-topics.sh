#!/bin/sh
# One-shot job (compose service `kafka-init`): creates streamrec's topics before any role starts.
# Idempotent (--if-not-exists), so `docker compose up` can run it on every start.
# Topic names come from the same STREAMREC_KAFKA__TOPICS__* variables the roles read.
set -eu

BOOTSTRAP="${STREAMREC_KAFKA__BOOTSTRAP:?STREAMREC_KAFKA__BOOTSTRAP is required}"
EVENTS="${STREAMREC_KAFKA__TOPICS__EVENTS:?STREAMREC_KAFKA__TOPICS__EVENTS is required}"
ITEMS="${STREAMREC_KAFKA__TOPICS__ITEMS:?STREAMREC_KAFKA__TOPICS__ITEMS is required}"
DEAD_LETTER="${STREAMREC_KAFKA__TOPICS__DEAD_LETTER:?STREAMREC_KAFKA__TOPICS__DEAD_LETTER is required}"
IMPRESSIONS="${STREAMREC_KAFKA__TOPICS__IMPRESSIONS:?STREAMREC_KAFKA__TOPICS__IMPRESSIONS is required}"
# Events are keyed by user id; 6 partitions let up to 6 consumer replicas share the load.
EVENTS_PARTITIONS="${EVENTS_PARTITIONS:-6}"
ITEMS_PARTITIONS="${ITEMS_PARTITIONS:-3}"
# Impressions (what serving showed) are keyed by user id too, so they scale like events.
IMPRESSIONS_PARTITIONS="${IMPRESSIONS_PARTITIONS:-$EVENTS_PARTITIONS}"
DEAD_LETTER_PARTITIONS="${DEAD_LETTER_PARTITIONS:-1}"
# Single-node stack: replication factor 1.
REPLICATION="${REPLICATION_FACTOR:-1}"
# Dead letters are kept 30 days so rejected input can be inspected and replayed.
DEAD_LETTER_RETENTION_MS="${DEAD_LETTER_RETENTION_MS:-2592000000}"

TOPICS=/opt/kafka/bin/kafka-topics.sh

create() {
  name="$1"; partitions="$2"; shift 2
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$REPLICATION" "$@"
  echo "topic=$name partitions=$partitions ready"
}

create "$EVENTS" "$EVENTS_PARTITIONS"
create "$ITEMS" "$ITEMS_PARTITIONS"
create "$IMPRESSIONS" "$IMPRESSIONS_PARTITIONS"
create "$DEAD_LETTER" "$DEAD_LETTER_PARTITIONS" --config "retention.ms=$DEAD_LETTER_RETENTION_MS"

"$TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topic "$EVENTS"
