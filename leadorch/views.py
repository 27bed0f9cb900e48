"""Project-level views: answers for hosts and errors outside any app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.template.loader import render_to_string


def unknown_host(request: HttpRequest) -> HttpResponse:
    """A host that names no brand: a plain 404 page that reveals nothing."""
    return HttpResponseNotFound(render_to_string("unknown_host.html"))
