"""The Diameter Gy load of bench/diameter.py against the Erlang/OTP reference server.

A yardstick, not ocsd: tests/interop/erlang/ocs_gy_ref_server.erl answers every
CCR with a fixed quota (2001, CC-Time 60) and keeps no state.  Rows "erlang
reference CCR (N concurrent sessions)" (this suite's asyncio generator) and
"erlang reference CCR via OTP client (N sessions)" (bench/erlang/ocs_gy_load.erl);
the suite divides the ocsd rows of the same run by them.  Needs erl, erlc and
diameterc (``OCS_WITH_INTEROP=1 scripts/bootstrap.sh``); without them the suite
shows one "skipped" row.
"""

from __future__ import annotations

from bench.diameter import reference as run

__all__ = ["run"]
