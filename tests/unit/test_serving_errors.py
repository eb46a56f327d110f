"""Domain errors become HTTP statuses in one table (serving.errors.STATUS_OF)."""

from __future__ import annotations

import pytest

from serving import service_errors
from serving.errors import STATUS_OF, status_of
from serving.service_errors import Conflict, NotFound, Rejected, ServiceError, Unavailable


def test_every_domain_error_kind_has_a_status() -> None:
    kinds = {
        value
        for value in vars(service_errors).values()
        if isinstance(value, type) and issubclass(value, ServiceError) and value is not ServiceError
    }
    assert kinds == set(STATUS_OF)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("unknown_item", "x"), 404),
        (Conflict("erasure_incomplete", "x"), 409),
        (Rejected("batch_too_large", "x"), 422),
        (Unavailable("no_model", "x"), 503),
    ],
)
def test_status_of_each_kind(error: ServiceError, status: int) -> None:
    assert status_of(error) == status


def test_a_subclass_gets_its_parents_status() -> None:
    class ItemGone(NotFound):
        pass

    assert status_of(ItemGone("gone", "x")) == 404
    assert status_of(ServiceError("odd", "x")) == 500
