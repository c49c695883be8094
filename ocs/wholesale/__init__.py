"""Wholesale services (docs/wholesale.md): called alike by ``ocsctl``, the REST API and the daemon."""
