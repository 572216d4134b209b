"""The dashboard at ``/dashboard`` (docs/dashboard.md)."""

from collector.dashboard.handlers import add_routes, cookie_middleware

__all__ = ["add_routes", "cookie_middleware"]
