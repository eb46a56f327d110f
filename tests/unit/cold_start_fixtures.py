"""A small trained model with a content map, for the cold-start tests (model and serving)."""

from __future__ import annotations

import numpy as np

from model.interactions import build_interactions
from model.lae import TrainConfig
from model.pipeline import fit_embeddings, fit_item_content, package_artifact
from model.trained_model import TrainedModel

BRANDS = ("acme", "zenith", "orbit")


def item_doc(item: str, cluster: int) -> dict:
    return {
        "item_id": item,
        "title": f"{BRANDS[cluster]} gadget",
        "category": f"Shop > c{cluster}",
        "properties": {"brand": BRANDS[cluster]},
    }


def clustered_model(version: int = 1, n_items: int = 60) -> TrainedModel:
    """``n_items`` items in 3 clusters (item i in cluster i % 3); user u shops in cluster u % 3."""
    rng = np.random.default_rng(1)
    events = []
    for u in range(90):
        own = np.arange(u % 3, n_items, 3)
        events += [(f"u{u}", f"i{int(rng.choice(own))}", "view", None, k) for k in range(12)]
    inter = build_interactions(events)
    config = TrainConfig(factors=8, reg=5.0, device="cpu")
    fitted = fit_embeddings(inter, config)
    content = fit_item_content(inter, fitted, {f"i{i}": item_doc(f"i{i}", i % 3) for i in range(n_items)})
    assert content is not None
    return TrainedModel(package_artifact(inter, fitted, config, version=version, content=content))
