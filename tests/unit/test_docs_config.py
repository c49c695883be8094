"""Every configuration key is documented (docs/configuration.md) and shipped (config/ocs.toml).

Walks the ocs.config dataclasses recursively, including the entries of the
arrays of tables ``[[radius.clients]]`` and ``diameter.allowed_peers``, so a new
field without documentation fails CI.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from ocs import config

ROOT = Path(__file__).resolve().parents[2]


def _entry_type(tp: Any) -> Any | None:
    """The dataclass of a ``tuple[X, ...]`` field, else None."""
    args = typing.get_args(tp)
    return args[0] if args and dataclasses.is_dataclass(args[0]) else None


def all_keys(cls: Any = config.Config, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf and array-of-tables key (entries as ``a.b.key``)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out += all_keys(tp, path + ".")
            continue
        out.append(path)
        entry = _entry_type(tp)
        if entry is not None:
            out += all_keys(entry, path + ".")
    return out


def test_walk_finds_nested_entries() -> None:
    keys = all_keys()
    assert "radius.clients.secret" in keys
    assert "diameter.allowed_peers.origin_host" in keys
    assert len(keys) > 40


def test_every_key_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [k for k in all_keys() if f"`{k}`" not in doc]
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


def test_every_key_in_shipped_toml() -> None:
    text = (ROOT / "config" / "ocs.toml").read_text()
    data = tomllib.loads(text)
    missing: list[str] = []
    for key in all_keys():
        parts = key.split(".")
        node: Any = data
        for part in parts:
            if isinstance(node, list):
                # array of tables: present in an entry, or (empty list) in a comment example
                node = node[0] if node else None
                if node is None:
                    if f"{part} =" not in text:
                        missing.append(key)
                    break
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert not missing, f"keys missing from config/ocs.toml: {missing}"


def test_shipped_toml_loads_to_defaults() -> None:
    cfg = config.from_mapping(tomllib.loads((ROOT / "config" / "ocs.toml").read_text()), env={})
    assert cfg == config.Config()
