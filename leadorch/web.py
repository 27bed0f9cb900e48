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
14 to 43 ms after.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from daphne import cli, http_protocol

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
        return application


def main(argv: list[str] | None = None) -> None:
    # daphne's run() builds its access log from this module attribute, and its
    # protocol factory each connection's requests from that one.
    cli.AccessLogGenerator = AccessLogGenerator  # type: ignore[misc]
    http_protocol.WebRequest = WebRequest  # type: ignore[misc]
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
