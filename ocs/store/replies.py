"""Redis replies as text: our RESP connection and redis-py hand back bytes (nothing is decoded for us)."""

from __future__ import annotations


def text(value: bytes | str | None) -> str:
    """Redis replies are bytes (the client does not decode); fields are UTF-8."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def fields(raw: dict[bytes, bytes] | dict[str, str] | list[bytes]) -> dict[str, str]:
    """An ``HGETALL`` reply as text: redis-py's dict, or the raw flat ``[k1, v1, k2, v2, ...]``."""
    if isinstance(raw, list):
        it = iter(raw)
        return {k.decode(): v.decode() for k, v in zip(it, it, strict=True)}
    return {text(k): text(v) for k, v in raw.items()}
