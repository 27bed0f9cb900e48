"""The web server: daphne, with its access log written through logging.

daphne writes its access log straight to stdout, where the request paths it
prints (chat links carry their token in the path) escape the redaction filter of
``settings.LOGGING``. Run as ``python -m leadorch.web`` with daphne's own
arguments, e.g. ``python -m leadorch.web -b 0.0.0.0 -p 8000
leadorch.asgi:application``: the same server, its access lines logged by the
``daphne.access`` logger with tokens replaced (see leadorch.logging).
"""

from __future__ import annotations

import sys

from daphne import cli

from leadorch.logging import AccessLogGenerator


def main(argv: list[str] | None = None) -> None:
    # daphne's run() builds its access log from this module attribute.
    cli.AccessLogGenerator = AccessLogGenerator  # type: ignore[misc]
    cli.CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
