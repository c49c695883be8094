"""The two ways a billing service call says no, so every caller (ocsctl, the API, the daemon) maps them alike.

- :class:`Refused`: the operation cannot be done in the current state (unknown account, a
  product already subscribed, a currency mismatch).  ``ocsctl`` exits 1, the API answers 409/404.
- :class:`Invalid`: a value is wrong; it names its field (the ``ocsctl`` option and CSV column
  name, e.g. ``tax-rate``), so the one line an operator sees says which one to fix.
"""

from __future__ import annotations


class Refused(Exception):
    """One line for the operator; nothing was changed."""


class Invalid(Refused):
    """A value refused; ``field`` is the option / CSV column name (``tax-rate``), ``message`` the reason."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
