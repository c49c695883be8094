"""``ocsctl alert set`` refuses malformed values before touching a store: one line naming the option, exit 2."""

from __future__ import annotations

import pytest

from ocs.cli.main import main


@pytest.mark.parametrize(("args", "field"), [
    (["--email", "not-an-address"], "--email"),
    (["--email", "a@b"], "--email"),
    (["--email", "ops@example.com\r\nBcc: x@example.com"], "--email"),
    (["--email", "ops@exa mple.com"], "--email"),
    (["--webhook", "ftp://example.com/x"], "--webhook"),
    (["--webhook", "http://"], "--webhook"),
    (["--webhook", "example.com/hook"], "--webhook"),
    (["--webhook", "https://example.com/a b"], "--webhook"),
    (["--webhook", "https://example.com:99999/"], "--webhook"),
    (["--low-balance", "-1"], "--low-balance"),
    (["--low-balance", "1.0000001"], "--low-balance"),
    (["--low-balance", "five"], "--low-balance"),
    (["--expensive-call", "-0.5"], "--expensive-call"),
    (["--expensive-call", "0"], "--expensive-call"),
    (["--long-call", "-5"], "--long-call"),
    (["--long-call", "1.5"], "--long-call"),
    (["--long-call", "0"], "--long-call"),
])
def test_bad_value_names_the_option(capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["alert", "set", "a1", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {field}:" in err[0], err


def test_nothing_to_set_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alert", "set", "a1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least one of --low-balance" in err[0]


@pytest.mark.parametrize("args", [
    ["--email", "first.last+ocs@mail.example.co.uk"],
    ["--webhook", "https://hooks.example.com:8443/ocs?token=abc"],
    ["--webhook", "http://[::1]:8080/x"],
    ["--low-balance", "0", "--expensive-call", "0.000001", "--long-call", "1"],
    ["--low-balance", "off", "--email", "off", "--webhook", "off", "--long-call", "off", "--expensive-call", "off"],
])
def test_good_values_parse(args: list[str]) -> None:
    from ocs.cli.main import build_parser

    ns = build_parser().parse_args(["alert", "set", "a1", *args])
    assert ns.func.__name__ == "set_cmd"
