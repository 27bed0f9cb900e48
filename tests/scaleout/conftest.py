"""The scale-out test keeps each phase's report on the test, as the browser tests do."""

from tests.browser.conftest import pytest_runtest_makereport  # noqa: F401 - a hook
