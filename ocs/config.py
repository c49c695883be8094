"""Configuration: TOML -> frozen dataclasses, validated once at start-up.

Every key of the operator's contract (docs/configuration.md) is a field here with its
default.  An unknown key or a value of the wrong type raises
:class:`ConfigError` whose message names the full key path (``radius.clients[0].secret``),
so ``ocsd`` and ``ocsctl`` can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import keyword
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = "config/ocs.toml"
RADIUS_VENDORS = ("", "cisco")
MAX_WORKERS = 256  # node.workers / ocsd --workers: a bound against a typo, far above any core count


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the key path."""


@dataclass(frozen=True)
class NodeConfig:
    name: str = "ocs1"
    reuse_port: bool = False  # SO_REUSEPORT on the Diameter and RADIUS listeners: several ocsd on one port
    workers: int = 0  # charging worker processes sharing the ports (0: one per core; 1: no supervisor)


@dataclass(frozen=True)
class PeerRule:
    """One entry of the optional Diameter peer allow-list; empty fields match anything."""

    origin_host: str = ""
    origin_realm: str = ""
    address: str = ""


@dataclass(frozen=True)
class DiameterConfig:
    listen: tuple[str, ...] = ("127.0.0.1:3868",)
    origin_host: str = "ocs.example.net"
    origin_realm: str = "example.net"
    watchdog_seconds: int = 30
    vendor_id: int = 0
    product_name: str = "ocsd"
    max_message_bytes: int = 1048576
    max_inflight_per_peer: int = 256
    max_inflight: int = 4096
    allowed_peers: tuple[PeerRule, ...] = ()


@dataclass(frozen=True)
class RadiusClient:
    address: str = "127.0.0.1/32"
    secret: str = "testing123"
    name: str = "local"
    vendor: str = ""  # "" or "cisco": Cisco voice gateways get h323-credit-time / h323-return-code
    coa: bool = False  # the NAS takes Disconnect-Request / CoA-Request (RFC 5176) from ocsd
    coa_port: int = 3799  # where it listens for them (RFC 5176 section 3.4's port)


@dataclass(frozen=True)
class RadiusConfig:
    auth_listen: str = "127.0.0.1:1812"
    acct_listen: str = "127.0.0.1:1813"
    dictionary: str = "radius/dictionary"
    extra_dictionaries: tuple[str, ...] = ()
    require_message_authenticator: bool = True
    start_timeout_seconds: int = 60
    acct_interim_interval: int = 0
    max_inflight: int = 2048
    replies_per_second_per_client: int = 20000
    duplicate_cache_seconds: int = 30
    socket_buffer_bytes: int = 4194304
    clients: tuple[RadiusClient, ...] = (RadiusClient(),)


@dataclass(frozen=True)
class ChargingConfig:
    grant_seconds: int = 300
    max_grant_seconds: int = 3600
    grant_octets: int = 10485760
    max_grant_octets: int = 1073741824
    validity_seconds: int = 1800
    grace_seconds: int = 60
    max_overuse_seconds: int = 600  # usage reported beyond grant + this is not charged (0 = no cap)
    reaper_interval_seconds: int = 5
    shards: int = 16

    @property
    def hold_seconds(self) -> int:
        """How long a silent session's hold lives: validity + grace (Tcc, RFC 4006 section 5.5)."""
        return self.validity_seconds + self.grace_seconds

    @property
    def tombstone_seconds(self) -> int:
        """How long a closed session stays to answer retransmissions and late reports (at least 1 h)."""
        return max(3600, self.hold_seconds)


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "ocs:"
    cluster: bool = False


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str = "postgresql://postgres@127.0.0.1:5432/ocs"
    flush_batch: int = 2000
    flush_interval_ms: int = 100


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:9108"


@dataclass(frozen=True)
class ApiConfig:
    """The REST API inside ocsd (docs/api.md); off unless ``listen`` is set."""

    listen: str = ""  # HOST:PORT; "" = no API
    max_inflight: int = 64  # requests handled at once; more get 503 (the charging path shares the loop)
    token_cache_seconds: int = 5  # a revoked token is refused within this
    pool_size: int = 4  # the API's own PostgreSQL connections (never the flusher's)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "json"
    # per-request info lines (ccr, access, accounting) written a second per process; beyond, dropped and
    # counted in one request_lines_sampled line a second (ocs.log_sampling); 0: no limit, every line
    request_lines_per_second: int = 200


@dataclass(frozen=True)
class CacheConfig:
    """Entries each node-local cache keeps at most (oldest evicted first; a miss costs a read, never money)."""

    sessions: int = 50000  # session states and session owners, each (SessionStore)
    accounts: int = 10000  # subscriber -> account entries of the one-second account view
    radius_duplicates: int = 50000  # RFC 5080 duplicate-detection entries (0 disables the cache)
    tariff_versions: int = 16  # compiled tariff versions; the current version of each tariff is always kept


@dataclass(frozen=True)
class BillingConfig:
    """Offline billing (spec section 10, docs/billing.md): the seller on invoices, numbering, dunning."""

    invoice_prefix: str = "INV-"
    company: str = ""
    address: str = ""
    tax_id: str = ""
    bank: str = ""
    block_overdue_days: int = 0  # 0 = off
    pin_pepper_file: str = ""  # the secret PINs are hashed with (HMAC-SHA256); kept outside the database


@dataclass(frozen=True)
class SmtpConfig:
    """Outgoing mail (alerts, invoices): STARTTLS and authentication are optional."""

    host: str = "127.0.0.1"
    port: int = 25
    from_: str = ""  # TOML key "from"
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_seconds: int = 30


@dataclass(frozen=True)
class AlertsConfig:
    """Alerts to people (docs/alerts.md): the webhook signature key and the outbox's retry schedule."""

    webhook_secret: str = ""  # HMAC-SHA256 key of X-OCS-Signature on webhook alerts
    webhook_timeout_seconds: int = 10  # connect + answer, per POST
    poll_seconds: int = 2  # how often a node looks for due deliveries
    retry_base_seconds: int = 30  # first retry after this, doubling per failed attempt
    retry_max_seconds: int = 3600  # the back-off stops growing here
    max_attempts: int = 0  # give a delivery up (failed, kept, requeueable) after this many; 0 = never


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    diameter: DiameterConfig = field(default_factory=DiameterConfig)
    radius: RadiusConfig = field(default_factory=RadiusConfig)
    charging: ChargingConfig = field(default_factory=ChargingConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "log.level": ("debug", "info", "warning", "error"),
    "log.format": ("json", "console"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(path: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and build nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
        return _build(path, tp, value)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {type(value).__name__}")
        return tuple(_convert(f"{path}[{i}]", item_tp, v) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{path}: unsupported union type")  # pragma: no cover
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{path}: must not be negative, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        choices = _CHOICES.get(path)
        if choices and value not in choices:
            raise ConfigError(f"{path}: must be one of {', '.join(choices)}, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(prefix: str, cls: type[Any], table: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        name = f"{key}_" if keyword.iskeyword(key) else key  # smtp.from is the field from_
        if name not in names:
            raise ConfigError(f"{path}: unknown key")
        kwargs[name] = _convert(path, hints[name], value)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    for i, c in enumerate(cfg.radius.clients):
        try:
            ipaddress.ip_network(c.address, strict=False)
        except ValueError:
            raise ConfigError(f"radius.clients[{i}].address: not an address or CIDR: {c.address!r}") from None
        if not c.secret:
            raise ConfigError(f"radius.clients[{i}].secret: must not be empty")
        if not 0 < c.coa_port < 65536:
            raise ConfigError(f"radius.clients[{i}].coa_port: must be a UDP port (1-65535), got {c.coa_port}")
        if c.vendor not in RADIUS_VENDORS:
            raise ConfigError(f"radius.clients[{i}].vendor: must be one of {', '.join(map(repr, RADIUS_VENDORS))},"
                              f" got {c.vendor!r}")

    for key, addr in (
        ("radius.auth_listen", cfg.radius.auth_listen),
        ("radius.acct_listen", cfg.radius.acct_listen),
        ("http.listen", cfg.http.listen),
        *((("api.listen", cfg.api.listen),) if cfg.api.listen else ()),
        *((f"diameter.listen[{i}]", a) for i, a in enumerate(cfg.diameter.listen)),
    ):
        try:
            split_hostport(addr)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    if cfg.charging.shards < 1:
        raise ConfigError("charging.shards: must be at least 1")
    if not 0 <= cfg.node.workers <= MAX_WORKERS:
        raise ConfigError(f"node.workers: must be 0 (one per core) to {MAX_WORKERS}, got {cfg.node.workers}")
    if cfg.charging.max_grant_seconds < 1:
        raise ConfigError("charging.max_grant_seconds: must be at least 1")
    for key, value in (("smtp.timeout_seconds", cfg.smtp.timeout_seconds),
                       ("api.max_inflight", cfg.api.max_inflight), ("api.pool_size", cfg.api.pool_size),
                       ("alerts.webhook_timeout_seconds", cfg.alerts.webhook_timeout_seconds),
                       ("alerts.poll_seconds", cfg.alerts.poll_seconds),
                       ("alerts.retry_base_seconds", cfg.alerts.retry_base_seconds)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1")
    if cfg.alerts.retry_max_seconds < cfg.alerts.retry_base_seconds:
        raise ConfigError("alerts.retry_max_seconds: must not be below alerts.retry_base_seconds")


def split_hostport(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:3868"`` / ``"[::1]:3868"`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    host = host.strip("[]")
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range in {addr!r}")
    return host, p


def from_mapping(data: dict[str, Any], env: typing.Mapping[str, str] | None = None) -> Config:
    """Build a validated :class:`Config` from parsed TOML plus environment overrides."""
    cfg: Config = _build("", Config, data)
    env = os.environ if env is None else env
    if env.get("OCS_REDIS_URL"):
        cfg = dataclasses.replace(cfg, redis=dataclasses.replace(cfg.redis, url=env["OCS_REDIS_URL"]))
    if env.get("OCS_NODE_NAME"):  # several instances from one file (systemd/ocsd@.service)
        cfg = dataclasses.replace(cfg, node=dataclasses.replace(cfg.node, name=env["OCS_NODE_NAME"]))
    if env.get("OCS_HTTP_LISTEN"):
        cfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, listen=env["OCS_HTTP_LISTEN"]))
    if env.get("OCS_API_LISTEN"):
        cfg = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, listen=env["OCS_API_LISTEN"]))
    if env.get("OCS_POSTGRES_DSN"):
        cfg = dataclasses.replace(
            cfg, postgres=dataclasses.replace(cfg.postgres, dsn=env["OCS_POSTGRES_DSN"])
        )
    _validate(cfg)
    return cfg


def resolve_path(explicit: str | None, env: typing.Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``$OCS_CONFIG``, then ``config/ocs.toml`` (docs/configuration.md)."""
    env = os.environ if env is None else env
    return Path(explicit or env.get("OCS_CONFIG") or DEFAULT_PATH)


def load(explicit: str | None = None, env: typing.Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file; a missing default file means all defaults."""
    path = resolve_path(explicit, env)
    if not path.exists():
        if explicit is None and (env or os.environ).get("OCS_CONFIG") is None:
            return from_mapping({}, env)
        raise ConfigError(f"{path}: no such config file")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return from_mapping(data, env)
