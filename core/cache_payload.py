"""The per-user results cache entry: two prefixes around the serialized item list.

Stored in Redis (one hash per user, field = request params, see ``core.keys``) as::

    b"{marker}:{expires_ms}:" + b"{tag}:" + items JSON

The outer prefix (``cache_entry`` / ``split_cached``, used by the Redis reader and its twin) says for
which state of the user the result was computed and until when it may be served: the consumer bumps
the marker on every change of the user, and Redis 7.0 has no per-field TTL. The inner prefix
(``cache_payload`` / ``cached_items_for``, used by serving) says with which model version and catalog
state it was computed. A result whose marker, expiry or tag does not match is a miss.
"""

from __future__ import annotations


def cache_entry(marker: int, ttl_s: int, payload: bytes, now_ms: int) -> bytes:
    return b"%d:%d:" % (marker, now_ms + ttl_s * 1000) + payload


def split_cached(raw: bytes | None, marker: int, now_ms: int) -> bytes | None:
    """The payload of a cache entry computed at ``marker`` and not yet expired, else None."""
    if not raw:
        return None
    head, sep, rest = raw.partition(b":")
    if not sep or not head.isdigit() or int(head) != marker:
        return None
    expires, sep, payload = rest.partition(b":")
    if not sep or not expires.isdigit() or int(expires) <= now_ms:
        return None
    return payload


def cache_tag(version: str | None, catalog_tag: bytes) -> bytes:
    """What a cached result must have been computed with: model version and catalog state."""
    return (version if version is not None else "-").replace(":", "_").encode() + b"|" + catalog_tag


def cache_payload(tag: bytes, items_json: bytes) -> bytes:
    """``{tag}:{items JSON}``; a result computed under another tag is a miss."""
    return tag + b":" + items_json


def cached_items_for(payload: bytes, tag: bytes) -> bytes | None:
    head, sep, items_json = payload.partition(b":")
    if not sep or head != tag or not items_json:
        return None
    return items_json
