"""Run a manage.py command (run_worker, run_dispatcher) for a fault test.

Exactly ``manage.py <command>``, with two test-only knobs read from the environment:

- ``FAULTS_OVERRIDES``: JSON ``{"module.CONSTANT": seconds}``; each named
  timedelta constant becomes that many seconds (the product has no setting for
  its recovery timeouts: ``touchpoints.processor.CLAIM_LEASE`` is 5 minutes,
  ``SENDING_TIMEOUT`` 10, ``leads.webhooks.PROCESSING_TIMEOUT`` 10; a test cannot
  wait that long). Set before the command starts, so forked workers inherit it.
- ``FAULTS_TWILIO_URL``: the Twilio SDK's requests go to this loopback stub
  instead of https://api.twilio.com (the SDK itself, its HTTP client and the
  product's backend are unchanged).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _apply_overrides() -> None:
    overrides = json.loads(os.environ.get("FAULTS_OVERRIDES") or "{}")
    for dotted, seconds in overrides.items():
        module_name, name = dotted.rsplit(".", 1)
        module = importlib.import_module(module_name)
        current = getattr(module, name)
        if not isinstance(current, timedelta):
            raise TypeError(f"{dotted} is not a timedelta")
        setattr(module, name, timedelta(seconds=float(seconds)))


def _redirect_twilio() -> None:
    url = os.environ.get("FAULTS_TWILIO_URL", "").rstrip("/")
    if not url:
        return
    from twilio.http.http_client import TwilioHttpClient

    from messaging import backends

    class LoopbackTwilioHttpClient(TwilioHttpClient):
        def request(self, method, uri, *args, **kwargs):  # type: ignore[no-untyped-def]
            for origin in ("https://api.twilio.com", "https://messaging.twilio.com"):
                uri = uri.replace(origin, url)
            return super().request(method, uri, *args, **kwargs)

    def twilio_http_client(*, timeout: float) -> TwilioHttpClient:
        return LoopbackTwilioHttpClient(timeout=timeout)

    backends.twilio_http_client = twilio_http_client


def main() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.chdir(REPO_ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadorch.settings")
    import django

    django.setup()
    _apply_overrides()
    _redirect_twilio()
    from django.core.management import execute_from_command_line

    execute_from_command_line([str(REPO_ROOT / "manage.py"), *sys.argv[1:]])


if __name__ == "__main__":
    main()
