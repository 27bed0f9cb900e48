"""The web server: daphne, with its access log written through logging, and
request bodies left to the application.

daphne writes its access log straight to stdout, where the request paths it
prints (chat links carry their token in the path) escape the redaction filter of
``settings.LOGGING``. Run as ``python -m leadorch.web`` with daphne's own
arguments, e.g. ``python -m leadorch.web -b 0.0.0.0 -p 8000
leadorch.asgi:application``: the same server, its access lines logged by the
``daphne.access`` logger with tokens replaced (see leadorch.logging).

Twisted, under daphne, parses the body of every form POST for itself (daphne
never reads the result: the application gets the raw body) and answers a
multipart body it cannot read with an HTML 400 of its own, before the
application can answer. Its check of the Content-Type alone, through the email
package, took a tenth of the server's time per webhook delivery. The server
here builds its requests without that parsing.

Once the application is loaded, what is in memory then (Django, the URL
patterns, the SDKs: some hundreds of thousands of objects) stays for the life of
the process, so it is moved out of the garbage collector's sight
(``gc.freeze``). Without that, each full collection walked all of it with the
event loop stopped: 88 to 114 ms, a few times in a minute of chat load, against
14 to 43 ms after. What is made after that is collected when no customer is
waiting for an answer to start (``leadorch.collector``).

The interpreter's switch interval is ``WEB_SWITCH_INTERVAL_MS`` (0.3 ms; CPython's
own is 5 ms). The chat sockets' database work runs in a pool of threads, and a
thread back from a round trip to the database waits for the event loop's thread
to give up the interpreter, up to one switch interval; a customer message is
several round trips. In 14 alternating pairs of runs of bench/chat_ws.py (the
mock provider, 200 sessions), our overhead per turn at p99 was at most 20 ms in
11 runs at 1 ms and in 7 at 5 ms; the median p99 was 17.8 against 19.8 ms. Later,
in 7 alternating pairs at 0.3 against 1 ms, the p99 was lower at 0.3 ms in 6
(median 21.4 against 27.0 ms, on a busier day of the machine); the web
process's CPU per answer was lower at 0.3 ms in 5 of the 7 (median 5.19 against
5.49 ms).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from daphne import cli, http_protocol
from django.conf import settings

from chat import pacing
from leadorch.collector import IdleCollector
from leadorch.logging import AccessLogGenerator


class WebRequest(http_protocol.WebRequest):
    """daphne's request, without Twisted's parsing of form bodies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


class CommandLineInterface(cli.CommandLineInterface):
    def load_asgi_app(self, asgi_app_path: str) -> Any:
        application = super().load_asgi_app(asgi_app_path)
        gc.collect()
        gc.freeze()
        interval = settings.WEB_SWITCH_INTERVAL_MS
        if not interval > 0:
            raise SystemExit(
                f"WEB_SWITCH_INTERVAL_MS must be a number of milliseconds above 0, "
                f"not {interval!r}."
            )
        sys.setswitchinterval(interval / 1000)
        IdleCollector(busy=pacing.any_starting).start()
        return application


def main(argv: list[str] | None = None) -> None:
    # daphne's run() builds its access log from this module attribute, and its
    # protocol factory each connection's requests from that one.
    cli.AccessLogGenerator = AccessLogGenerator  # type: ignore[misc]
    http_protocol.WebRequest = WebRequest  # type: ignore[misc]
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
