from __future__ import annotations

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.db import connection

import chat.ai.http
from chat import services as chat_services
from chat.ai import service as ai_service
from chat.models import ChatSession
from tests.appointments.conftest import NOW, customer, store, tint  # noqa: F401
from tests.chat.ai_transport import ScriptedTransport
from tests.factories import ServiceCatalogItemFactory


@pytest.fixture
def clock():
    """Monday 07:00 at the San Diego store: Tuesday is bookable from 09:00."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def catalog(tint):
    return [
        tint,
        ServiceCatalogItemFactory(
            code="tint-windshield",
            name="Windshield tint",
            category="Window tint",
            price_cents=19900,
            duration_minutes=60,
        ),
        ServiceCatalogItemFactory(
            code="ppf-front",
            name="Paint protection film, front end",
            category="Paint protection",
            price_cents=129900,
            duration_minutes=240,
        ),
    ]


@pytest.fixture
def providers(settings):
    """Anthropic first, then OpenAI, then the scripted assistant: the SDKs answer
    through ``chat.ai.http.transport`` (see ``script``)."""
    settings.AI_PROVIDER = "anthropic"
    settings.ANTHROPIC_API_KEY = "test-anthropic"
    settings.ANTHROPIC_MODEL = "claude-test-1"
    settings.ANTHROPIC_INPUT_USD_PER_MTOK = "3.00"
    settings.ANTHROPIC_OUTPUT_USD_PER_MTOK = "15.00"
    settings.OPENAI_API_KEY = "test-openai"
    settings.OPENAI_MODEL = "gpt-test-1"
    settings.OPENAI_INPUT_USD_PER_MTOK = "0.40"
    settings.OPENAI_OUTPUT_USD_PER_MTOK = "1.60"
    settings.AI_TIMEOUT_SECONDS = 2.0


@pytest.fixture
def script(monkeypatch):
    """Installs a ScriptedTransport answering the SDKs' requests in order."""

    def install(answers: list) -> ScriptedTransport:
        transport = ScriptedTransport(answers)
        monkeypatch.setattr(chat.ai.http, "transport", transport)
        return transport

    return install


@pytest.fixture
def session(customer, catalog, clock) -> ChatSession:
    return chat_services.session_for_lead(lead=customer)


def say(session: ChatSession, text: str, **kwargs):
    """Post a customer message and run the assistant on it, as the socket does."""
    posted = chat_services.customer_message_post(session=session, text=text)
    return async_to_sync(ai_service.assistant_answer)(
        schema_name=connection.schema_name,
        session_id=session.pk,
        customer_message_id=posted.message.pk,
        **kwargs,
    )
