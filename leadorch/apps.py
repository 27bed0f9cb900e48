import os

from django.apps import AppConfig


def _forget_connection_pools() -> None:
    """In a forked child (django-q2 forks its workers), start with no connections.

    A psycopg pool's threads do not survive fork, and sockets shared with the
    parent must not be used by both: the child drops its references (without
    closing what the parent still uses) and opens its own pool on first use.
    """
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    DatabaseWrapper._connection_pools.clear()
    for connection in connections.all(initialized_only=True):
        connection.connection = None


class LeadorchConfig(AppConfig):
    name = "leadorch"
    verbose_name = "Platform operations"

    def ready(self) -> None:
        os.register_at_fork(after_in_child=_forget_connection_pools)
