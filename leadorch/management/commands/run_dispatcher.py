from django.core.management.base import BaseCommand, CommandParser

from leadorch.dispatch import Dispatcher


class Command(BaseCommand):
    help = "Run the dispatcher: sub-minute periodic work (due touch points, CRM polls, heartbeats)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tick",
            type=float,
            default=None,
            help="Seconds between ticks (default from settings).",
        )
        parser.add_argument(
            "--ticks",
            type=int,
            default=None,
            help="Stop after this many ticks (default: run until stopped).",
        )

    def handle(self, *args: object, **options: object) -> None:
        dispatcher = Dispatcher(tick_seconds=options["tick"])  # type: ignore[arg-type]
        dispatcher.install_signal_handlers()
        ticks = dispatcher.run(max_ticks=options["ticks"])  # type: ignore[arg-type]
        self.stdout.write(f"Dispatcher stopped after {ticks} tick(s).")
