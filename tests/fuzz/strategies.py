"""Hypothesis strategies shared by the fuzz tests: JSON shaped like what the
providers send, with the keys the parsers look for, and garbage in every place."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Deterministic (a fixed derivation per test instead of a random seed), bounded, and
# without deadlines: the machine running the suite may be busy.
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For tests that go through the database or the whole request cycle.
FUZZ_SLOW = settings(
    FUZZ,
    max_examples=40,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)

# Keys the ShopMonkey, Twilio and SendGrid parsers read, so that random objects
# reach past the first check.
KNOWN_KEYS = [
    "id",
    "data",
    "table",
    "operation",
    "apiVersion",
    "meta",
    "version",
    "updatedDate",
    "createdDate",
    "orderCreatedDate",
    "number",
    "name",
    "coalescedName",
    "status",
    "authorized",
    "messageCount",
    "workflowStatusId",
    "locationId",
    "customerId",
    "vehicleId",
    "customer",
    "vehicle",
    "firstName",
    "lastName",
    "emails",
    "phoneNumbers",
    "email",
    "primary",
    "year",
    "make",
    "model",
    "submodel",
    "success",
    "message",
    "code",
    "hasMore",
    "total",
    "event",
    "type",
    "tenant",
    "sg_event_id",
    "sg_message_id",
    "timestamp",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "order",
            "INSERT",
            "DELETE",
            "2026-09-24T14:12:05.318Z",
            "2026-13-45T99:99:99Z",
            "0001-01-01T00:00:00",
            "delivered",
            "bounce",
            "alpha",
            "+16195550134",
            "\x00",
            "9" * 40,
        ]
    ),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10))


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


json_objects = st.dictionaries(keys, json_values(), max_size=8)
