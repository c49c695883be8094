"""Every Redis key the OCS uses, in one place (layout version 1).

Cluster safety: all keys one script touches share a hash tag.  An account is
mapped to a *shard* ``s`` = crc32(account id) mod ``charging.shards``; every key
of the account (balance hash, its sessions, the shard's expiry index and usage
stream) carries the tag ``{s<shard>}``.  So every Lua script touches one slot,
and the usage stream can be appended inside the same script as the debit
(no debit without a record).  ``charging.shards`` must never change on a live
deployment: it is part of the layout, like the prefix.

Keys (``P`` is ``redis.key_prefix``, ``S`` the ``{sNN}`` tag):

- ``P S:acct:<id>``          hash: bal, rsv, cl, type, st, cur, tariff, nsess
- ``P S:acct:<id>:applied``  set of ledger ids applied to bal (top-up idempotency)
- ``P S:acct:<id>:bun``      hash: included seconds of the account's bundles, per period key
                               ``YYYY-MM:<product>``: ``q:<key>`` quota, ``u:<key>`` used, ``h:<key>`` held
- ``P S:acct:<id>:live``     set of the account's open sessions (expiry members ``acct|sid|rg``), kept by
                               the scripts that open, re-key and close sessions; server-initiated control
                               (ASR, RAR, Disconnect, CoA: ``ocs.control``) walks it instead of a SCAN
- ``P S:sess:<id>|<sid>|<rg>`` hash: session state (see charging.py / lua headers)
- ``P S:expiry``             zset: session key -> expiry (epoch ms), for the reaper
- ``P S:usage``              stream of usage records and CDRs (group ``flush``)
- ``P S:seq``                counter for record ids
- ``P S:totals``             hash: ``rsv`` = the shard's reserved money (kept by the scripts that
                               move holds, so the ``ocs_reserved_micros`` gauge needs no SCAN)
- ``P alias:<value>``        string: account id
- ``P placement``            hash: account id -> shard of an account placed off its crc32 shard (a reseller's
                               subscriber lives on its reseller's shard: ``Keys.shard_for``; written before
                               the account hash, never changed)
- ``P S:origin:<origin>``    set of the members (account, sid, rg) of the shard's sessions opened
                               through a NAS/peer (Accounting-On/Off settles them); kept by the scripts
- ``P S:sgrp:<id>|<sid>``    set of the rating groups other than 0 that session ``sid`` of account
                               ``id`` opened (a Diameter CCR-T without MSCC ends them all); kept by reserve.lua
- ``P sidx:<sid>``            string: account id owning front-end session ``sid`` (so an
                               update/terminate without a subscriber still finds it)
- ``P sidx:<sid>:rg``, ``P origin:<origin>``: the unsharded forms of the two sets above, written
                               before 0.3 and still read (sessions opened before an upgrade)
- ``P nodes``                zset: node name -> last heartbeat (epoch ms) of every ocsd (``ocs.control``)
- ``P peer:<origin-host>``   hash: node name -> until when (epoch ms) that node holds an open connection
                               to the Diameter peer (refreshed every few seconds; the session -> peer
                               -> node route of an ASR/RAR)
- ``P ctl:<node>``           stream of control commands for that node (group ``ctl``)
- ``P ctl:reply:<id>``       list: the one answer to a command someone waits for (expires)
- ``P tariffs:gen``          counter bumped by every tariff import (daemons reload)
- ``P providers:gen``        counter bumped by the provider and route verbs (the flusher reloads its cost book)
- ``P tariffs:snap``         hash: tariff name -> current version last read from PostgreSQL
- ``P tariffs:snap:<name>:<version>`` string: that version, zlib-compressed JSON, kept 30 days
                               after its last load (a daemon started during a PostgreSQL outage
                               rates from these: :mod:`ocs.store.tariff_snapshot`)
- ``P fx:snap``              string: the FX table (JSON rows) as last read from PostgreSQL, for a start
                               during an outage (:mod:`ocs.store.fx`; ``tariffs:gen`` also signals FX changes)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

LAYOUT_VERSION = 1
USAGE_GROUP = "flush"


_TAGS: dict[str, list[str]] = {}  # key prefix -> the hash tag of each shard


def shard_of(account_id: str, shards: int) -> int:
    """Stable shard of an account (crc32, not Python's salted hash)."""
    return zlib.crc32(account_id.encode()) % shards


@dataclass(frozen=True)
class Keys:
    """Key builder bound to a prefix and shard count."""

    prefix: str = "ocs:"
    shards: int = 16
    # Resellers (docs/wholesale.md): account id -> shard of the accounts NOT on their crc32 shard (a
    # reseller's subscribers live on their reseller's shard, so one script moves both balances).  A copy
    # of ``P placement`` (ocs.store.placement); filled at start, on a miss; an entry never changes.
    placement: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def tag(self, shard: int) -> str:
        """``<prefix>{sNN}``: the hash tag of a shard, formatted once per prefix (every key of a request needs it)."""
        tags = _TAGS.get(self.prefix)
        if tags is not None and 0 <= shard < len(tags):
            return tags[shard]
        if not 0 <= shard < 4096:  # not a shard this node has: formatted, not kept
            return f"{self.prefix}{{s{shard:02d}}}"
        tags = [f"{self.prefix}{{s{i:02d}}}" for i in range(max(shard + 1, self.shards))]
        _TAGS[self.prefix] = tags
        return tags[shard]

    def shard_for(self, account_id: str) -> int:
        """The shard of an account's keys: its placement when it has one, else crc32 (one dict lookup)."""
        sh = self.placement.get(account_id)
        return shard_of(account_id, self.shards) if sh is None else sh

    def tag_of(self, account_id: str) -> str:
        return self.tag(self.shard_for(account_id))

    def placement_key(self) -> str:
        """Hash: account id -> shard, for the accounts placed off their crc32 shard (never changed once set)."""
        return f"{self.prefix}placement"

    def account(self, account_id: str) -> str:
        return f"{self.tag_of(account_id)}:acct:{account_id}"

    def applied(self, account_id: str) -> str:
        return f"{self.tag_of(account_id)}:acct:{account_id}:applied"

    def live(self, account_id: str) -> str:
        return f"{self.tag_of(account_id)}:acct:{account_id}:live"

    def bundles(self, account_id: str) -> str:
        """Included-seconds counters of the account's bundles (``ocs.rating.bundles``); the scripts
        derive the same name from the account key (``_lib.lua`` ``bundle_key``)."""
        return f"{self.account(account_id)}:bun"

    def session(self, account_id: str, session: str, rating_group: int) -> str:
        """Includes the account: front-end session ids are only unique per client, not per shard."""
        return f"{self.tag_of(account_id)}:sess:{account_id}|{session}|{rating_group}"

    def expiry(self, shard: int) -> str:
        return f"{self.tag(shard)}:expiry"

    def usage(self, shard: int) -> str:
        return f"{self.tag(shard)}:usage"

    def totals(self, shard: int) -> str:
        return f"{self.tag(shard)}:totals"

    def seq(self, shard: int) -> str:
        return f"{self.tag(shard)}:seq"

    def alias(self, value: str) -> str:
        return f"{self.prefix}alias:{value}"

    def session_index(self, session: str) -> str:
        return f"{self.prefix}sidx:{session}"

    def session_groups(self, session: str) -> str:
        """Legacy (before 0.3): the rating groups of a session, unsharded; read only."""
        return f"{self.prefix}sidx:{session}:rg"

    def origin(self, origin: str) -> str:
        """Legacy (before 0.3): one origin set for all shards; read only."""
        return f"{self.prefix}origin:{origin}"

    def origin_in_shard(self, shard: int, origin: str) -> str:
        return f"{self.tag(shard)}:origin:{origin}"

    def groups(self, account_id: str, session: str) -> str:
        return f"{self.tag_of(account_id)}:sgrp:{account_id}|{session}"

    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    def peer(self, origin_host: str) -> str:
        return f"{self.prefix}peer:{origin_host}"

    def control(self, node: str) -> str:
        return f"{self.prefix}ctl:{node}"

    def control_reply(self, ident: str) -> str:
        return f"{self.prefix}ctl:reply:{ident}"

    def tariffs_gen(self) -> str:
        return f"{self.prefix}tariffs:gen"

    def providers_gen(self) -> str:
        """Bumped by the provider and route verbs: the flusher reloads its cost book (ocs/wholesale)."""
        return f"{self.prefix}providers:gen"

    def tariff_snapshot_current(self) -> str:
        return f"{self.prefix}tariffs:snap"

    def tariff_snapshot(self, name: str, version: int) -> str:
        return f"{self.prefix}tariffs:snap:{name}:{version}"

    def all_sessions_pattern(self) -> str:
        """SCAN pattern matching every session hash of every shard."""
        return f"{self.prefix}{{s*}}:sess:*"

    def all_usage_streams(self) -> list[str]:
        return [self.usage(s) for s in range(self.shards)]
