#!/usr/bin/env python
"""Django's command-line utility for Lead Orchestrator."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadorch.settings")
    from django.core.management import execute_from_command_line

    from leadorch.database import DatabaseStartError

    try:
        execute_from_command_line(sys.argv)
    except DatabaseStartError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
