"""End-to-end tests reuse the browser tests' Chromium fixtures and report hook."""

from tests.browser.conftest import (  # noqa: F401 - fixtures and a hook, by name
    chromium,
    guard,
    open_page,
    pytest_runtest_makereport,
)
