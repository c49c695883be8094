"""Offline billing on PostgreSQL (docs/billing.md): one service layer per capability.

``ocsctl``, the REST API and the daemon call the same functions here; nothing is implemented
twice, and the callers only translate arguments and errors.
"""
