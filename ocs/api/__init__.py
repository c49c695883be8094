"""The REST API served inside ``ocsd`` (docs/api.md): /api/v1 with OpenAPI, bearer tokens, an audit log.

Nothing here imports FastAPI at package import: :mod:`ocs.api.tokens` is also ``ocsctl``'s.
"""
