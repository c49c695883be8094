"""Shard hash tags are formatted once per prefix (ocs.store.keys.Keys.tag) and read the same as formatted."""

from __future__ import annotations

from ocs.store.keys import Keys


def test_tags_equal_the_format() -> None:
    for prefix, shards in (("ocs:", 16), ("t:", 4), ("other:", 1)):
        k = Keys(prefix, shards)
        for shard in (*range(shards + 3), 150, 4095, 4096, -1):
            assert k.tag(shard) == f"{prefix}{{s{shard:02d}}}"
    assert Keys("ocs:", 16).account("a") == "ocs:{s" + f"{Keys('ocs:', 16).shard_for('a'):02d}" + "}:acct:a"
