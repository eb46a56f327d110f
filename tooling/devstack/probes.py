"""Network checks for the dev stack: free ports, and whether a server answers its own protocol."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tcp_open(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _host_port(name: str, url: str) -> tuple[str, int]:
    if name == "kafka":
        host, _, port = url.split(",")[0].rpartition(":")
        return host, int(port)
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].split(",")[0]
    host, _, port = rest.rpartition(":")
    return host, int(port or {"mongo": 27017, "redis": 6379}[name])


def probe_url(name: str, url: str, timeout_s: float = 2.0) -> bool:
    """Does the server answer its own protocol (not just accept TCP)?"""
    try:
        host, port = _host_port(name, url)
    except ValueError:
        return False
    # A TCP check first: clients of a closed port spend their whole timeout retrying and log noise.
    if not _tcp_open(host, port, timeout_s):
        return False
    try:
        if name == "kafka":
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": url, "log_level": 0})
            admin.list_topics(timeout=timeout_s)
        elif name == "mongo":
            import pymongo

            client: pymongo.MongoClient = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=int(timeout_s * 1000), connectTimeoutMS=int(timeout_s * 1000)
            )
            try:
                client.admin.command("ping")
            finally:
                client.close()
        else:
            import redis

            conn = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            try:
                conn.ping()
            finally:
                conn.close()
    except Exception as exc:
        log.debug("event=devstack_probe_failed server=%s error=%s", name, exc)
        return False
    return True
