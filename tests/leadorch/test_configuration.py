"""Every environment variable the code reads is documented in .env.example, and none is left over."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(
    r"""(?:env(?:\.\w+)?|environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def _read_by_code() -> set[str]:
    names: set[str] = set()
    for path in [
        *ROOT.glob("leadorch/**/*.py"),
        *ROOT.glob("*/management/commands/*.py"),
    ]:
        names |= set(READ.findall(path.read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def _documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_documents_every_variable():
    assert _read_by_code() - _documented() == set()


def test_env_example_has_no_stale_variables():
    assert _documented() - _read_by_code() == set()
