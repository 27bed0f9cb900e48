"""Calls into higher layers without importing them: the handlers named in a setting."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


def hooks_run(setting_name: str, **kwargs: Any) -> None:
    """Call every handler listed in ``settings.<setting_name>`` with ``kwargs``, in order."""
    for path in getattr(settings, setting_name):
        import_string(path)(**kwargs)
