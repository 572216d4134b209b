"""TLS for the HTTP API when ``[server] tls_cert`` and ``tls_key`` are set."""

from __future__ import annotations

import ssl

from collector.settings import Settings, SettingsError


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    cert, key = settings.server.tls_cert, settings.server.tls_key
    if cert is None or key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"server.tls_cert: cannot load certificate/key: {exc}") from None
    return ctx
