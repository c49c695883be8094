"""ocs: an online charging system (Diameter Gy/Ro and RADIUS prepaid) on Redis and PostgreSQL."""

__version__ = "0.1.0"
