"""Write docs/reliability.md from the last fault-test run (``make test-faults`` runs it).

Reads ``.var/faults/session.json`` (the outcome of each fault test) and
``.var/faults/results/*.json`` (each scenario's figures), runs the in-suite
reliability tests listed in IN_SUITE (with the test suite's own settings and
database, as ``make test`` does) for their pass status, and writes the document.

    .venv/bin/python tests/faults/report.py [--skip-in-suite] [--output docs/reliability.md]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = REPO_ROOT / ".var" / "faults"
RESULTS_DIR = FAULTS_DIR / "results"
SESSION_FILE = FAULTS_DIR / "session.json"
JUNIT_FILE = FAULTS_DIR / "in-suite.xml"
OUTPUT = REPO_ROOT / "docs" / "reliability.md"

# (result name, test node id, what "attempted / acknowledged / processed" count)
SCENARIOS = (
    (
        "worker_sigkill",
        "tests/faults/test_worker_sigkill.py::test_worker_sigkill",
        "touch points / reached the provider / in a final state",
    ),
    (
        "worker_sigkill_idle",
        "tests/faults/test_worker_sigkill.py::test_worker_sigkill_idle",
        "idle workers killed / - / clusters taking jobs again within 20 s",
    ),
    (
        "postgres_restart",
        "tests/faults/test_postgres_restart.py::test_postgres_restart",
        "orders / orders answered 2xx / acknowledged orders that are leads",
    ),
    (
        "shopmonkey_down",
        "tests/faults/test_shopmonkey_down.py::test_shopmonkey_down",
        "orders created in the API / listed by it / leads",
    ),
    (
        "ai_hang",
        "tests/faults/test_ai_hang.py::test_ai_hang",
        "chat turns / answered / answered by the offline assistant",
    ),
    (
        "duplicate_storm",
        "tests/faults/test_duplicate_storm.py::test_duplicate_storm",
        "deliveries / answered 2xx / leads",
    ),
)

# (node id or file, what it shows)
IN_SUITE = (
    (
        "tests/leads/test_webhook.py::test_twenty_concurrent_deliveries_of_one_order_make_one_lead",
        "20 concurrent deliveries of one order (view) make 1 lead",
    ),
    (
        "tests/leads/test_webhook_asgi.py::test_twenty_concurrent_deliveries_of_one_order_make_one_lead",
        "the same through the ASGI webhook route",
    ),
    (
        "tests/leads/test_webhook.py::test_a_webhook_and_a_poll_of_one_order_at_once_make_one_lead",
        "a webhook and a poll of one order at once make 1 lead",
    ),
    (
        "tests/leads/test_webhook.py::test_redelivery_of_the_same_version_is_acknowledged_once",
        "a redelivered record version is stored once",
    ),
    (
        "tests/leads/test_webhook_asgi.py::test_database_down_while_storing_is_503_like_the_view",
        "database down while storing a delivery: 503",
    ),
    (
        "tests/leadorch/test_health.py::test_pages_answer_503_not_500_when_database_is_down",
        "pages answer 503, not 500, while the database is down",
    ),
    (
        "tests/leads/test_poll_and_backfill.py::test_cursor_stays_when_the_api_is_down_and_the_next_poll_catches_up",
        "the poll cursor stays while the API is down",
    ),
    (
        "tests/touchpoints/test_processor.py::test_two_workers_on_1000_due_touch_points_send_each_exactly_once",
        "two workers on 1,000 due touch points send each once",
    ),
    (
        "tests/touchpoints/test_processor.py::test_rows_a_worker_left_before_recording_their_messages_are_sent_later_once",
        "a worker dead before recording its messages: the rows are sent later, once",
    ),
    (
        "tests/touchpoints/test_processor.py::test_rows_whose_messages_may_have_reached_the_provider_are_never_resent",
        "a worker dead at the provider call: the rows need review, never resent",
    ),
    (
        "tests/touchpoints/test_processor.py::test_rows_whose_provider_answer_was_stored_take_that_answer",
        "a worker dead after the provider answered: the rows take that answer",
    ),
    (
        "tests/touchpoints/test_processor.py::test_a_claim_whose_worker_died_before_sending_is_taken_again",
        "a claim whose worker died before sending is taken again",
    ),
    (
        "tests/appointments/test_booking.py::test_a_hundred_attempts_on_one_slot_with_three_bays_make_three_bookings",
        "100 concurrent bookings of one slot, 3 bays: 3 bookings",
    ),
    (
        "tests/appointments/test_crm_sync.py::test_a_failing_crm_never_loses_the_booking_and_is_retried",
        "a failing CRM never loses a booking; the sync retries",
    ),
    (
        "tests/chat/test_consumer.py::test_a_resend_after_reconnect_is_not_stored_or_answered_twice",
        "a chat message re-sent after a reconnect is stored once",
    ),
    (
        "tests/chat/test_assistant_service.py::test_a_provider_that_hangs_is_left_after_the_timeout",
        "a hanging AI provider is left after the timeout",
    ),
    (
        "tests/messaging/test_gate_properties.py",
        "the gate's rules (quiet hours, cap, opt-outs, mode) as properties",
    ),
    ("tests/tenants/test_isolation.py", "brands never see each other's data"),
    (
        "tests/e2e/test_end_to_end.py::test_a_webhook_lead_is_contacted_chats_books_and_reaches_shopmonkey",
        "end to end: signed webhook, lead, first SMS and email, chat in Chromium, "
        "price, booking, confirmation, ShopMonkey appointment (figures below)",
    ),
    (
        "tests/scaleout/test_redis_topology.py",
        "Redis, two web, two worker and two dispatcher processes: webhooks, touch "
        "points and a cross-process staff reply, nothing twice (figures below)",
    ),
    (
        "tests/fuzz/test_api_schema.py",
        "schemathesis: every operation of /api/schema/ with a valid chat token, no 5xx",
    ),
    (
        "tests/fuzz/test_parsers.py",
        "hypothesis: webhook parsers, phone and keyword normalisers never raise",
    ),
    (
        "tests/fuzz/test_webhook_views.py",
        "hypothesis: webhook views answer 4xx with JSON to any body, never 5xx",
    ),
    ("tests/fuzz/test_found_bugs.py", "what fuzzing found, kept as regressions"),
    ("tests/security/test_deploy_settings.py", "check --deploy clean; secure cookies"),
    (
        "tests/security/test_csrf.py",
        "CSRF on the admin; webhooks and the chat API exempt",
    ),
    (
        "tests/security/test_rate_limits.py",
        "rate limits on webhooks, chat and token lookups",
    ),
    ("tests/security/test_log_redaction.py", "tokens and secrets never logged"),
)

# Figures the real-process tests of ``make test`` leave in tests/artifacts/:
# (file, title, node id, rows of (label, key, unit))
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
RUN_FIGURES = (
    (
        "e2e-figures.json",
        "End to end",
        "tests/e2e/test_end_to_end.py::test_a_webhook_lead_is_contacted_chats_books_and_reaches_shopmonkey",
    ),
    (
        "scaleout-figures.json",
        "Scale-out with Redis",
        "tests/scaleout/test_redis_topology.py::test_two_of_each_process_share_redis_and_nothing_is_sent_twice",
    ),
)


# --- Inputs --------------------------------------------------------------------------------


def git_commit() -> str:
    """HEAD's commit, read from .git without running git."""
    git = REPO_ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip()
        common = git / "commondir"
        base = (git / common.read_text().strip()).resolve() if common.is_file() else git
        for candidate in (base / ref, base / "packed-refs"):
            if candidate.is_file() and candidate.name != "packed-refs":
                return candidate.read_text().strip()
            if candidate.is_file():
                for line in candidate.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        pass
    return "unknown"


def run_in_suite() -> dict[str, str]:
    """Run the in-suite reliability tests; return each node id's outcome."""
    FAULTS_DIR.mkdir(parents=True, exist_ok=True)
    JUNIT_FILE.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    subprocess.run(  # noqa: S603 - our own test suite
        [
            sys.executable,
            "-m",
            "pytest",
            *(node for node, _ in IN_SUITE),
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={JUNIT_FILE}",
        ],
        cwd=REPO_ROOT,
        env=env,
        check=False,
        timeout=900,
    )
    return junit_outcomes()


def junit_outcomes() -> dict[str, str]:
    if not JUNIT_FILE.is_file():
        return {}
    outcomes: dict[str, str] = {}
    for case in ET.parse(JUNIT_FILE).iter("testcase"):  # noqa: S314 - our own file
        path = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        outcomes[f"{path}::{name}"] = outcome
    return outcomes


def in_suite_status(node: str, outcomes: dict[str, str]) -> str:
    """ "passed", "failed", "3 passed", "not run" for a node id or a whole file."""
    if "::" in node:
        found = [
            o
            for key, o in outcomes.items()
            if key == node or key.startswith(node + "[")
        ]
    else:
        found = [o for key, o in outcomes.items() if key.startswith(node + "::")]
    if not found:
        return "not run"
    failed = found.count("failed")
    if failed:
        return f"**FAILED** ({failed} of {len(found)})"
    return "passed" if len(found) == 1 else f"{len(found)} passed"


def load_results() -> dict[str, dict[str, Any]]:
    results = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        document = json.loads(path.read_text())
        results[document["scenario"]] = document
    return results


# --- Output --------------------------------------------------------------------------------


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return f"{value:,}"


def outcome_text(outcome: str | None) -> str:
    if outcome is None:
        return "not run"
    return {
        "passed": "passed",
        "failed": "**FAILED**",
        "xfailed": "fails as expected (finding)",
        "xpassed": "**passed unexpectedly**",
        "skipped": "skipped",
    }.get(outcome, outcome)


def description(path: str, test: str) -> str:
    """The test's docstring (or its module's), as written."""
    try:
        module = ast.parse((REPO_ROOT / path).read_text())
    except (OSError, SyntaxError):
        return ""
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == test:
            text = ast.get_docstring(node)
            if text:
                return text
    return ast.get_docstring(module) or ""


def anchor(title: str) -> str:
    """The id GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str, ensure_ascii=False)


def detail_lines(details: dict[str, Any]) -> list[str]:
    """One bullet per figure; a list of records gets one sub-bullet per record."""
    lines = []
    for key, value in details.items():
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) for v in value)
        ):
            lines.append(f"- {key}:")
            lines += [f"  - `{compact(v)}`" for v in value]
        else:
            lines.append(f"- {key}: `{compact(value)}`")
    return lines


def check_line(check: dict[str, Any]) -> str:
    text = f"- {'✓' if check['ok'] else '✗'} {check['check']}"
    if not check["ok"] and check["detail"] not in ("", None):
        text += f": `{compact(check['detail'])}`"
    return text


def header(session: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    machine = session.get("machine", {})
    dates = sorted(r["date"] for r in results.values() if r.get("date"))
    span = f"{dates[0]} to {dates[-1]}" if dates else "none"
    seconds = session.get("seconds")
    ran = len(session.get("ran", []))
    took = (
        f", {ran} fault tests in {seconds // 60:.0f} min {seconds % 60:.0f} s"
        if seconds
        else ""
    )
    load = ", ".join(str(x) for x in machine.get("load_average", []))
    return [
        "# Reliability",
        "",
        "Generated by `make test-faults` (`tests/faults/report.py`) from its last run; "
        "do not edit by hand.",
        "",
        f"- last session: {session.get('started', 'never')} (UTC){took}; "
        f"figures from {span}",
        f"- machine: {machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), "
        f"{machine.get('memory_gib', '?')} GiB; load average at the start {load} "
        "(the machine may be shared)",
        f"- commit: `{git_commit()}` (the checkout when the document was written)",
        "",
    ]


def summary_table(
    results: dict[str, dict[str, Any]], outcomes: dict[str, str]
) -> list[str]:
    lines = [
        "## Fault tests",
        "",
        "Real processes as in production (daphne, `manage.py run_worker`, "
        "`manage.py run_dispatcher`) against a PostgreSQL of the tests' own "
        "(`.var/faults/pg`, stopped, crashed and restarted at will), with loopback "
        "stand-ins for ShopMonkey, Twilio and the AI provider. Latencies in ms.",
        "",
        "| scenario | result | attempted | acknowledged | processed | duplicates | lost "
        "| unknown | p50 | p95 | p99 | counts are | latency is |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    keys = ("attempted", "acknowledged", "processed", "duplicates", "lost", "unknown")
    for name, node, meaning in SCENARIOS:
        result = results.get(name) or {}
        counts = result.get("counts", {})
        latency = result.get("latency_ms") or {}
        cells = [
            f"[{result.get('title', name)}](#{anchor(result.get('title', name))})",
            outcome_text(outcomes.get(node)),
            *(number(counts.get(key)) for key in keys),
            *(number(latency.get(p)) for p in ("p50", "p95", "p99")),
            meaning,
            result.get("latency_of", "-"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "*lost*: acknowledged (or due) and never done; *unknown*: the outcome cannot be "
        "known by the sender (touch points: `needs_review`, never resent by themselves; "
        "deliveries: orders never answered 2xx after every retry).",
        "",
    ]
    return lines


def findings_section(
    results: dict[str, dict[str, Any]], outcomes: dict[str, str]
) -> list[str]:
    def each(key: str) -> list[tuple[str, Any]]:
        return [
            (results[name].get("title", name), item)
            for name, _, _ in SCENARIOS
            if name in results
            for item in results[name].get(key, [])
        ]

    failed = [
        (results[name].get("title", name), check)
        for name, node, _ in SCENARIOS
        if name in results and outcomes.get(node) != "xfailed"
        for check in results[name].get("checks", [])
        if not check["ok"]
    ]
    findings, observations = each("findings"), each("observations")
    lines = ["## Findings", ""]
    if not findings and not failed:
        lines += ["Nothing failed in the last run.", ""]
    lines += [f"- **{title}**: {text}" for title, text in findings]
    lines += [
        f"- **{title}**, check failed{check_line(check)[1:]}" for title, check in failed
    ]
    if observations:
        lines += ["", "Observed, not failures:", ""]
        lines += [f"- **{title}**: {text}" for title, text in observations]
    return [*lines, ""]


def scenario_sections(
    results: dict[str, dict[str, Any]], outcomes: dict[str, str]
) -> list[str]:
    lines = ["## Scenarios", ""]
    for name, node, _ in SCENARIOS:
        result = results.get(name)
        if result is None:
            continue
        path, test = node.split("::")
        lines += [
            f"### {result.get('title', name)}",
            "",
            f"`{path}::{test}`: {outcome_text(outcomes.get(node))}, "
            f"{number(result.get('duration_s'))} s.",
            "",
            description(path, test),
            "",
            f"This run: {result.get('setup', '')}.",
            "",
            *(check_line(check) for check in result.get("checks", [])),
            "",
            "<details><summary>figures of the run</summary>",
            "",
            *detail_lines(result.get("details", {})),
            "",
            "</details>",
            "",
        ]
    return lines


def in_suite_date() -> str:
    if not JUNIT_FILE.is_file():
        return "not run"
    moment = datetime.fromtimestamp(JUNIT_FILE.stat().st_mtime, UTC)
    return moment.replace(microsecond=0).isoformat()


def in_suite_section(suite: dict[str, str]) -> list[str]:
    lines = [
        "## In-suite reliability tests",
        "",
        "Part of `make test` (the suite's own database); run again by `make test-faults` "
        f"for this table ({in_suite_date()}).",
        "",
        "| test | shows | result |",
        "|---|---|---|",
    ]
    for node, shows in IN_SUITE:
        path, _, test = node.partition("::")
        label = f"`{path}`" + (f" `{test}`" if test else " (whole file)")
        status = in_suite_status(node, suite) if suite else "not run"
        lines.append(f"| {label} | {shows} | {status} |")
    return [*lines, ""]


def run_figures_section(suite: dict[str, str]) -> list[str]:
    """The figures the end-to-end and scale-out tests wrote in this run."""
    lines = [
        "## End-to-end and scale-out figures",
        "",
        "Written by the tests themselves (`tests/artifacts/`) when they ran for the "
        "table above; times in seconds.",
        "",
    ]
    for filename, title, node in RUN_FIGURES:
        path = ARTIFACTS_DIR / filename
        status = in_suite_status(node, suite) if suite else "not run"
        lines += [f"### {title}", "", f"`{node.split('::')[0]}`: {status}.", ""]
        if status != "passed" or not path.is_file():
            lines += ["No figures from this run.", ""]
            continue
        figures = json.loads(path.read_text())
        lines += ["| figure | value |", "|---|---|"]
        for key, value in figures.items():
            if isinstance(value, dict):
                shown = f"`{json.dumps(value)}`"
            elif isinstance(value, str):
                shown = value
            else:
                shown = number(value)
            lines.append(f"| {key.replace('_', ' ')} | {shown} |")
        lines.append("")
    return lines


HOW_TO_RUN = [
    "## Running them",
    "",
    "```sh",
    "make test-faults    # every fault test, then this document",
    "# one scenario (figures in .var/faults/results/, process logs in .var/faults/logs/):",
    ".venv/bin/python -m pytest tests/faults -m faults --ds tests.faults.settings -k storm",
    ".venv/bin/python tests/faults/report.py --skip-in-suite   # rewrite this document",
    "```",
    "",
    '`make test` leaves them out (`-m "not faults"`). Each scenario starts and stops '
    "its own processes, servers and stubs, with a time limit on every wait. Two "
    "liberties with production, both for time: the touch point claim lease and "
    "'sending' timeout (5 and 10 minutes, no setting) are 10 and 15 s in the worker "
    "scenario (`tests/faults/_launch.py`), and the deliveries a crash leaves "
    "'processing' have their clock moved past the 10-minute processing timeout in "
    "the restart scenario. Everything else runs as configured in production.",
    "",
]


def render(
    session: dict[str, Any], results: dict[str, dict[str, Any]], suite: dict[str, str]
) -> str:
    outcomes = session.get("outcomes", {})
    return "\n".join(
        [
            *header(session, results),
            *summary_table(results, outcomes),
            *findings_section(results, outcomes),
            *scenario_sections(results, outcomes),
            *in_suite_section(suite),
            *run_figures_section(suite),
            *HOW_TO_RUN,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--skip-in-suite", action="store_true", help="reuse the last in-suite results"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    session = json.loads(SESSION_FILE.read_text()) if SESSION_FILE.is_file() else {}
    results = load_results()
    suite = junit_outcomes() if args.skip_in_suite else run_in_suite()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(session, results, suite))
    sys.stdout.write(f"written: {args.output.relative_to(REPO_ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
