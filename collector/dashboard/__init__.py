"""The dashboard at ``/dashboard`` (README ``## Dashboard``)."""

from collector.dashboard.handlers import add_routes, cookie_middleware

__all__ = ["add_routes", "cookie_middleware"]
