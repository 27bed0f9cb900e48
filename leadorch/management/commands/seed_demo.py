from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadorch.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo brand Tint World (two stores, catalog, staff, leads). Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even with DEBUG off. The demo logins have published passwords: never on a real server.",
        )

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates logins with published passwords and runs only with DEBUG=1 "
                "(make run sets it). Use --force to seed anyway."
            )
        summary = demo_seed()
        if summary.created:
            self.stdout.write(
                self.style.SUCCESS(f"Demo data created: {', '.join(summary.created)}.")
            )
        else:
            self.stdout.write("Demo data already present; nothing changed.")
        self.stdout.write(
            f"Brand {summary.tenant.name} answers at: {', '.join(summary.hosts)}"
        )
        self.stdout.write("Demo logins (development only):")
        for role, username, password in summary.logins:
            self.stdout.write(f"  {role:<32} {username} / {password}")
