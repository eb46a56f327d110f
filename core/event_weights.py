"""How much one interaction counts: the one event-weight rule of the product.

Used everywhere events are weighed: the consumer's popularity counters (``consumer.plans``), the training
matrix and the retrain gate's history fold-in (``model.interactions``, ``retrain.model_adapter``), and
serving's session vector (``serving.ranking``). The weights are the settings' ``model.weights``
(``STREAMREC_MODEL__WEIGHTS__<TYPE>``), so popularity, training and serving agree on what a purchase is
worth compared to a view.
"""

from __future__ import annotations

import numpy as np

from core.events import EventType
from core.settings import EventWeights

# Read once: the event types a weight can be set for (training calls this once per event).
_WEIGHTED_TYPES = frozenset(EventWeights.model_fields)
_RATE = EventType.RATE.value


def event_weight(event_type: str, value: float | None, weights: EventWeights) -> float:
    """The weight of one event of ``event_type`` carrying ``value``.

    - the weight ``weights`` gives the event's type;
    - a ``rate`` event counts that weight times its rating (``value``): with the default ``rate`` weight
      of 1.0 a 4-star rating counts 4.0; a ``rate`` event without a value counts 0;
    - the ``value`` of any other type is ignored;
    - a type ``EventWeights`` has no weight for counts 0 (callers skip events whose weight is not
      positive: the model drops them from its matrix, serving from the session vector).

    The result may be 0 or negative (a 0-star rating, a negative weight set on purpose); what to do with
    such an event is the caller's decision.
    """
    if event_type not in _WEIGHTED_TYPES:
        return 0.0
    base: float = getattr(weights, event_type)
    if event_type == _RATE:
        return base * value if value is not None else 0.0
    return base


def event_weights(event_types: np.ndarray, values: np.ndarray, weights: EventWeights) -> np.ndarray:
    """``event_weight`` of many events at once (``values`` NaN where an event carries none): the same
    rule, one lookup per distinct type instead of one Python call per event."""
    kinds, inverse = np.unique(np.asarray(event_types, dtype=str), return_inverse=True)
    base = np.array([event_weight(str(k), 1.0, weights) for k in kinds], dtype=np.float64)
    out = base[inverse.reshape(-1)]
    rate = np.flatnonzero(kinds == _RATE)
    if len(rate):
        is_rate = inverse.reshape(-1) == rate[0]
        value = np.asarray(values, dtype=np.float64)[is_rate]
        out[is_rate] = np.where(np.isnan(value), 0.0, base[rate[0]] * value)
    return out
