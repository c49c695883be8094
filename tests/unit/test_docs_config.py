"""Every config key is documented (docs/configuration.md) and listed in config/ocs.toml; config errors name the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from ocs import config

ROOT = Path(__file__).resolve().parents[2]


def _keys(prefix: str, cls: type) -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name.rstrip('_')}"  # smtp.from is the field from_
        if dataclasses.is_dataclass(tp):
            out += _keys(path + ".", tp)  # type: ignore[arg-type]
        elif typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out.append(path)
            out += _keys(path + "[].", typing.get_args(tp)[0])
        else:
            out.append(path)
    return out


KEYS = _keys("", config.Config)


@pytest.mark.parametrize("key", KEYS)
def test_key_is_documented(key: str) -> None:
    assert f"`{key}`" in (ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("key", KEYS)
def test_key_is_in_the_shipped_config(key: str) -> None:
    leaf = key.rsplit(".", 1)[-1].replace("[]", "")
    section = key.split(".", maxsplit=1)[0]
    text = (ROOT / "config" / "ocs.toml").read_text()
    if f"[[{key}]]" in text:
        return
    assert f"[{section}]" in text and f"{leaf} =" in text


@pytest.mark.parametrize(("data", "key"), [
    ({"charging": {"grant_seconds": "x"}}, "charging.grant_seconds"),
    ({"radius": {"clients": [{"adress": "1.2.3.4"}]}}, "radius.clients[0].adress"),
    ({"log": {"format": "xml"}}, "log.format"),
    ({"bogus": {}}, "bogus"),
    ({"radius": {"require_message_authenticator": 1}}, "radius.require_message_authenticator"),
])
def test_errors_name_the_key(data: dict[str, typing.Any], key: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_mapping(data, env={})
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_environment_overrides() -> None:
    cfg = config.from_mapping({}, env={"OCS_REDIS_URL": "redis://h:1/2", "OCS_POSTGRES_DSN": "postgresql://x/y"})
    assert (cfg.redis.url, cfg.postgres.dsn) == ("redis://h:1/2", "postgresql://x/y")
    cfg = config.from_mapping({"node": {"name": "file"}}, env={"OCS_NODE_NAME": "ocs1-2",
                                                              "OCS_HTTP_LISTEN": "127.0.0.1:9102"})
    assert (cfg.node.name, cfg.http.listen) == ("ocs1-2", "127.0.0.1:9102")


def test_config_path_resolution(tmp_path: Path) -> None:
    assert config.resolve_path("a.toml", env={"OCS_CONFIG": "b.toml"}) == Path("a.toml")
    assert config.resolve_path(None, env={"OCS_CONFIG": "b.toml"}) == Path("b.toml")
    assert config.resolve_path(None, env={}) == Path("config/ocs.toml")
