"""lethelog collector: the service that ingests, masks, enriches, keeps per session and forgets."""

__version__ = "0.1.0"
