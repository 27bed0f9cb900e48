"""Settings of the fault-test session itself (``pytest --ds tests.faults.settings``).

The session never opens a database connection: every scenario runs the product
as subprocesses against a PostgreSQL of its own (see harness.py). Pointing
DATABASE_URL at nothing keeps loading the settings from starting or attaching to
the embedded development server that the test suite and other people use.
"""

import os

os.environ["DATABASE_URL"] = (
    "postgres://no-database@127.0.0.1:1/fault-session-uses-none"
)

from leadorch.settings_test import *  # noqa: F403
