import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from leadorch.worker import cluster_run


class Command(BaseCommand):
    help = (
        "Run the job worker: django-q2's cluster (Q_WORKERS processes), started again "
        "whole when one of its processes dies suddenly."
    )

    def handle(self, *args: object, **options: object) -> None:
        settings.SECRET_KEY  # noqa: B018 - tasks are signed: refuse to start without it
        sys.exit(cluster_run())
