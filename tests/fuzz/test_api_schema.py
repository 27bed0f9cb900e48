"""Schemathesis against the brand host's /api/schema/: every operation, with a valid
chat token in the path, through Django's WSGI handler in-process.

Checks: no 5xx, and every response (status, content type, body, headers) is what
the schema says, for data that fits the schema (positive) and data that does not
(negative). Bounded and deterministic: a fixed number of examples per operation
and mode, derandomized.

(schemathesis's own pytest integration, ``schemathesis.pytest.from_fixture``, does
not run under pytest 9 yet, so the operations' strategies are driven directly.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from chat import services as chat_services
from tests.appointments.conftest import customer, store, tint  # noqa: F401
from tests.conftest import host_of

OPERATIONS = {
    "chat_appointment_book",
    "chat_context",
    "chat_messages_create",
    "chat_messages_list",
}
# Whether a schema-valid request is accepted depends on the conversation, which no
# schema expresses: a slot can be booked only if the assistant offered it, a message
# only within the conversation's rate. Their refusals (400, documented) are checked for
# shape like every other answer.
STATEFUL = {"chat_appointment_book", "chat_messages_create"}


@pytest.fixture
def _keep_the_test_connection() -> Iterator[None]:
    """Django's handler closes the connection after each request, and the test's
    transaction lives on it (Django's test client does the same)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api(tenant, customer, tint, settings, _keep_the_test_connection):
    settings.AI_PROVIDER = "scripted"
    host = host_of(tenant)
    token = chat_services.chat_links_create(leads=[customer])[customer.pk][3:]
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/", get_wsgi_application(), headers={"Host": host}
    )
    return schema, host, token


FUZZ = hypothesis_settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def fuzz(strategy, *, host: str, excluded: list) -> None:
    @FUZZ
    @given(case=strategy)
    def check(case):
        # The API's throttles start afresh: the limits are tested elsewhere.
        cache.clear()
        case.call_and_validate(headers={"Host": host}, excluded_checks=excluded)

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_schema(api, mode):
    schema, host, token = api
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.definition.raw["operationId"] for op in operations} == OPERATIONS

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (
            len(operation.query) or len(operation.body)
        ):
            continue  # only the token, fixed: nothing to make invalid
        stateful = operation.definition.raw["operationId"] in STATEFUL
        fuzz(
            operation.as_strategy(
                generation_mode=mode, path_parameters={"token": token}
            ),
            host=host,
            excluded=[positive_data_acceptance] if stateful else [],
        )
