"""The project's Diameter dictionary (diameter/ocs_gy.dia) and ocs/diameter/constants.py cannot drift.

The dictionary is what the Erlang/OTP interop client compiles with diameterc; the constants are
what ocsd encodes and decodes.  Parsed here without Erlang, so the check runs everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocs.diameter import constants as c

DIA = Path(__file__).resolve().parents[2] / "diameter" / "ocs_gy.dia"


def _avps() -> dict[str, tuple[int, str, str]]:
    text = DIA.read_text()
    types = text.split("@avp_types", 1)[1].split("@avp_vendor_id", 1)[0]
    return {m[1]: (int(m[2]), m[3], m[4])
            for m in re.finditer(r"^\s+([A-Z][\w-]+)\s+(\d+)\s+(\w+)\s+(\S+)\s*$", types, re.M)}


def test_every_avp_ocsd_names_has_the_dictionary_code() -> None:
    codes = _avps()
    compared = 0
    for name, (code, _type, _flags) in codes.items():
        const = name.upper().replace("-", "_")
        if hasattr(c, const):
            assert getattr(c, const) == code, name
            compared += 1
    assert compared >= 25


def test_the_dictionary_has_every_avp_of_the_gy_mapping() -> None:
    codes = _avps()
    for needed in ("Service-Context-Id", "CC-Request-Type", "CC-Request-Number", "Subscription-Id",
                   "Subscription-Id-Type", "Subscription-Id-Data", "Multiple-Services-Credit-Control",
                   "Requested-Service-Unit", "Used-Service-Unit", "Granted-Service-Unit", "CC-Time",
                   "CC-Total-Octets", "CC-Input-Octets", "CC-Output-Octets", "CC-Service-Specific-Units",
                   "Rating-Group", "Validity-Time", "Final-Unit-Indication", "Final-Unit-Action",
                   "Requested-Action", "Service-Information", "IMS-Information", "Called-Party-Address",
                   "Calling-Party-Address"):
        assert needed in codes, needed
    vendor = DIA.read_text().split("@avp_vendor_id 10415", 1)[1].split("@", 1)[0].split()
    assert {"Service-Information", "IMS-Information", "Called-Party-Address"} <= set(vendor)
    for name in vendor:  # 3GPP AVPs carry the V bit (TS 32.299 section 7.2)
        assert "V" in codes[name][2], name


def test_a_drifted_constant_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: a wrong code is noticed."""
    monkeypatch.setattr(c, "CC_TIME", 999)
    with pytest.raises(AssertionError, match="CC-Time"):
        test_every_avp_ocsd_names_has_the_dictionary_code()


def _messages() -> dict[str, tuple[int, str, list[str]]]:
    """Message name -> (command code, header flags, AVP names in order) from the @messages section."""
    text = DIA.read_text().split("@messages", 1)[1].split("\n@", 1)[0]
    out = {}
    for m in re.finditer(r"^\s+(\w+) ::= < Diameter Header: (\d+)((?:, \w+)*) >\n((?:\s+\*? ?[<{\[].*\n)+)", text,
                         re.M):
        out[m[1]] = (int(m[2]), m[3], re.findall(r"[<{\[] ([\w-]+) [>}\]]", m[4]))
    return out


def test_the_dictionary_has_the_server_initiated_requests_ocsd_sends() -> None:
    """ASR/ASA and RAR/RAA in application 4 (messages are not inherited from the base in OTP)."""
    msgs = _messages()
    assert msgs["CCR"][:2] == (c.CCR, ", REQ, PXY")
    assert msgs["ASR"][:2] == (c.ASR, ", REQ, PXY") and msgs["ASA"][:2] == (c.ASR, ", PXY")
    assert msgs["RAR"][:2] == (c.RAR, ", REQ, PXY") and msgs["RAA"][:2] == (c.RAR, ", PXY")
    head = ["Session-Id", "Origin-Host", "Origin-Realm", "Destination-Realm", "Destination-Host",
            "Auth-Application-Id"]  # RFC 6733 sections 8.3.1 and 8.5.1, in this order
    assert msgs["ASR"][2][:6] == head and msgs["RAR"][2][:7] == [*head, "Re-Auth-Request-Type"]
    for answer in ("ASA", "RAA"):
        assert msgs[answer][2][:4] == ["Session-Id", "Result-Code", "Origin-Host", "Origin-Realm"]
