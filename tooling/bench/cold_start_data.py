"""Item metadata for ``streamrec bench cold-start``: per data set, catalog documents as the catalog stores
them (``title``, ``category``, ``properties``), which ``model.content.ContentFeaturizer`` reads, plus each
item's categories for the category-popularity baseline.

What each data set offers (read from its README in ../shared/data):

- ml-latest-small: ``movies.csv`` (title with the year, ``|``-separated genres) and ``tags.csv`` (free-text
  tags users applied; each distinct tag becomes a boolean property ``tag:<text>``).
- ml-100k: ``u.item`` (latin-1; title, release date, 19 genre flags named in ``u.genre``).
- taobao: the category id on every event (one per item).
- amazon-magazine: ``meta_Magazine_Subscriptions.json.gz`` (brand, category path, title; duplicate lines
  deduplicated by asin, HTML escapes undone, the many titles that are scraped HTML treated as missing);
  its events are the ratings-only file, which ``tooling.offline.datasets`` does not read.

Movies also get their release decade as a property: a new film is mostly a recent one, and the decade is
catalog data a store has on day one.
"""

from __future__ import annotations

import csv
import gzip
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.event_table import EventTable
from tooling.offline.datasets import DatasetError, load_dataset

AMAZON_DIR = "amazon-2018-magazine-subscriptions"
COLD_DATASETS = ("ml-latest-small", "ml-100k", "taobao", "amazon-magazine")
_YEAR = re.compile(r"\((\d{4})\)\s*$")

Doc = dict[str, Any]


@dataclass(frozen=True)
class Catalog:
    """Catalog documents and categories by item id; an item absent here has no metadata."""

    docs: dict[str, Doc]
    categories: dict[str, list[str]]
    source: str  # which fields were used, for the report

    def doc(self, item_id: str) -> Doc:
        return self.docs.get(item_id, {"item_id": item_id})

    def cats(self, item_id: str) -> list[str]:
        return self.categories.get(item_id, [])


def _decade(year: int | None) -> dict[str, Any]:
    return {"decade": f"{year // 10 * 10}s"} if year else {}


def movielens_latest_catalog(folder: Path) -> Catalog:
    docs: dict[str, Doc] = {}
    cats: dict[str, list[str]] = {}
    with _open(folder / "movies.csv") as fh:
        for rec in csv.DictReader(fh):
            item, title = rec["movieId"].strip(), rec["title"].strip()
            genres = [g for g in rec["genres"].split("|") if g and g != "(no genres listed)"]
            match = _YEAR.search(title)
            year = int(match.group(1)) if match else None
            docs[item] = {
                "item_id": item,
                "title": _YEAR.sub("", title).strip(),
                "category": "|".join(genres),
                "properties": _decade(year),
            }
            cats[item] = genres
    with _open(folder / "tags.csv") as fh:
        for rec in csv.DictReader(fh):
            doc = docs.get(rec["movieId"].strip())
            tag = " ".join(rec["tag"].lower().split())[:60]
            if doc is not None and tag:
                doc["properties"][f"tag:{tag}"] = True
    return Catalog(docs, cats, "movies.csv title words, genres, release decade; tags.csv tags")


def movielens_100k_catalog(folder: Path) -> Catalog:
    genre_names: list[str] = []
    with _open(folder / "u.genre", encoding="latin-1") as fh:
        for line in fh:
            if "|" in line:
                genre_names.append(line.strip().rsplit("|", 1)[0])  # listed in flag order
    docs: dict[str, Doc] = {}
    cats: dict[str, list[str]] = {}
    with _open(folder / "u.item", encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("|")
            if len(parts) < 5 + len(genre_names):
                continue
            item, title, released = parts[0].strip(), parts[1].strip(), parts[2].strip()
            flags = parts[5 : 5 + len(genre_names)]
            genres = [g for g, f in zip(genre_names, flags, strict=True) if f == "1" and g != "unknown"]
            year = int(released[-4:]) if released[-4:].isdigit() else None
            docs[item] = {
                "item_id": item,
                "title": _YEAR.sub("", title).strip(),
                "category": "|".join(genres),
                "properties": _decade(year),
            }
            cats[item] = genres
    return Catalog(docs, cats, "u.item title words, genres, release decade")


def taobao_catalog(folder: Path) -> Catalog:
    docs: dict[str, Doc] = {}
    cats: dict[str, list[str]] = {}
    with _open(folder / "taobao-userbehavior-head" / "UserBehavior_head.csv") as fh:
        for rec in csv.DictReader(fh):
            item, cat = rec["item_id"].strip(), rec["category_id"].strip()
            if item not in docs and cat:
                docs[item] = {"item_id": item, "category": f"c{cat}"}
                cats[item] = [cat]
    return Catalog(docs, cats, "category id")


def amazon_catalog(folder: Path) -> Catalog:
    docs: dict[str, Doc] = {}
    cats: dict[str, list[str]] = {}
    path = folder / AMAZON_DIR / "meta_Magazine_Subscriptions.json.gz"
    if not path.is_file():
        raise DatasetError(f"{path} not found (data sets live in ../shared/data; see its README.md)")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            item = str(rec.get("asin", "")).strip()
            if not item or item in docs:
                continue  # the file repeats 1,065 lines verbatim
            # The first part is the store section every item shares; the rest is the path.
            path_parts = [html.unescape(str(p)).strip() for p in rec.get("category") or []][1:]
            title = html.unescape(str(rec.get("title") or "")).strip()
            brand = html.unescape(str(rec.get("brand") or "")).strip()
            doc: Doc = {"item_id": item, "properties": {"brand": brand} if brand else {}}
            if title and not title.startswith("<"):  # most titles are scraped HTML, not a title
                doc["title"] = title
            if path_parts:
                doc["category"] = " > ".join(path_parts)
                cats[item] = [doc["category"]]
            docs[item] = doc
    return Catalog(docs, cats, "brand, category path, title (HTML-scraped titles dropped)")


def amazon_events(folder: Path) -> EventTable:
    """``Magazine_Subscriptions.csv``: item, user, rating, epoch seconds; no header."""
    path = folder / AMAZON_DIR / "Magazine_Subscriptions.csv"
    users: list[str] = []
    items: list[str] = []
    ts: list[int] = []
    with _open(path) as fh:
        for line, rec in enumerate(csv.reader(fh), start=1):
            if len(rec) != 4 or not rec[3].strip().isdigit():
                raise DatasetError(f"{path}:{line}: expected item,user,rating,epoch seconds")
            items.append(rec[0].strip())
            users.append(rec[1].strip())
            ts.append(int(rec[3]) * 1000)
    n = len(users)
    return EventTable(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.full(n, "rate", dtype=str),
        value=np.full(n, np.nan),
        ts_ms=np.array(ts, dtype=np.int64),
    )


def load_cold_start(dataset: str, data_dir: Path) -> tuple[EventTable, Catalog]:
    """The events and the item metadata of one of ``COLD_DATASETS``."""
    if dataset == "ml-latest-small":
        return load_dataset(dataset, data_dir), movielens_latest_catalog(data_dir / "movielens-latest-small")
    if dataset == "ml-100k":
        return load_dataset(dataset, data_dir), movielens_100k_catalog(data_dir / "movielens-100k")
    if dataset == "taobao":
        return load_dataset(dataset, data_dir), taobao_catalog(data_dir)
    if dataset == "amazon-magazine":
        return amazon_events(data_dir), amazon_catalog(data_dir)
    raise DatasetError(f"unknown data set {dataset!r}; expected one of {', '.join(COLD_DATASETS)}")


def _open(path: Path, encoding: str = "utf-8") -> Any:
    if not path.is_file():
        raise DatasetError(f"{path} not found (data sets live in ../shared/data; see its README.md)")
    return open(path, newline="", encoding=encoding)
