"""Typed access to the Lua scripts in ``ocs/store/lua``.

Design rule (docs/architecture.md): one ``.lua`` file per atomic operation, its
header listing KEYS, ARGV and every return code; Python calls it through a
:class:`Script` with EVALSHA and falls back to SCRIPT LOAD on NOSCRIPT (a Redis
restart or failover forgets loaded scripts).  The charging scripts are called
through :class:`~ocs.store.pipeline.AutoPipeline` (``rp.script(...)``, batched per loop tick);
``topup.lua`` directly through :meth:`Script.__call__` (:mod:`ocs.store.provision`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

ScriptArg = str | int | bytes


def _read(name: str) -> str:
    return resources.files("ocs.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def lua_source(name: str) -> str:
    """The text of ``ocs/store/lua/<name>.lua`` with ``-- @include NAME`` lines spliced in.

    Redis has no module system for scripts; shared helpers (``_lib.lua``) are
    spliced at load time so each script stays one self-contained atomic op.
    """
    out = []
    for line in _read(name).splitlines():
        if line.startswith("-- @include "):
            out.append(_read(line.split()[-1]))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


class Script:
    """One Lua script, called by SHA with a NOSCRIPT fallback."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)
