"""README and docs name only files that exist, and point at the repository's own docs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"(?<![\w/.-])((?:docs|scripts|config|systemd|radius|diameter|bench|ocs)/[\w./@-]*[\w])")


def _docs() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "diameter").glob("*.md"))]


def test_every_repository_path_named_in_the_docs_exists() -> None:
    missing = []
    for doc in _docs():
        for m in PATH.finditer(doc.read_text()):
            path = m.group(1).rstrip(".")
            if "*" in path or "<" in path or path.startswith("bench/results/"):  # written by a bench run
                continue
            if not (ROOT / path).exists() and not (ROOT / path.split(":")[0]).exists():
                missing.append(f"{doc.name}: {path}")
    assert not missing, missing


def test_docs_do_not_cite_a_spec_users_do_not_have() -> None:
    for doc in _docs():
        text = doc.read_text()
        assert not re.search(r"spec section \d|\.\./shared", text), doc.name
