"""Which providers answer, in which order."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from chat.ai.base import Provider
from chat.ai.scripted import ScriptedProvider

REMOTE_PROVIDERS = {
    "anthropic": "chat.ai.anthropic_provider.AnthropicProvider",
    "openai": "chat.ai.openai_provider.OpenAIProvider",
}


def all_providers() -> list[Provider]:
    """Every provider the product knows, configured or not, the offline one last."""
    providers: list[Provider] = [
        import_string(path)() for path in REMOTE_PROVIDERS.values()
    ]
    providers.append(ScriptedProvider())
    return providers


def providers_chain(*, allow_remote: bool = True) -> list[Provider]:
    """The providers to ask, in order: AI_PROVIDER, the other configured ones, the
    offline assistant. Providers without an API key are left out; with
    ``allow_remote`` false (a budget is spent) only the offline one is left."""
    first = settings.AI_PROVIDER.strip().lower()
    names = list(REMOTE_PROVIDERS)
    if first in REMOTE_PROVIDERS:
        names.remove(first)
        names.insert(0, first)
    chain: list[Provider] = []
    if allow_remote and first != "scripted":
        for name in names:
            provider = import_string(REMOTE_PROVIDERS[name])()
            if provider.is_configured():
                chain.append(provider)
    chain.append(ScriptedProvider())
    return chain


def providers_preload() -> None:
    """Import now the SDKs the first answer would import: loading one takes a second
    or two, which a web server would otherwise spend on its event loop in the
    middle of a conversation, holding up every socket it serves."""
    providers_chain()
