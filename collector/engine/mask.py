"""Stages that touch the client address: mask it, then derive the pseudonymous session key.

The common case — a plain dotted-quad IPv4 client with no forwarded-for chain — is truncated on
the column. Every other shape (IPv6, ports, brackets, chains, sockets, hostnames, anything odd)
goes through the exact :class:`masking.ip.IPMasker` once per distinct (site, client, chain), so
the answer is the masker's, whatever it learns. The raw address lives in the ``_ip`` column only
between these stages and Shape, which does not select it.
"""

from __future__ import annotations

import polars as pl

from collector.engine.batch import BoundedCache, map_distinct, split_errors
from collector.engine.stage import Batch
from collector.keys import KeyRing
from collector.record import RecordError
from collector.settings import Settings
from masking.ip import AddressError, IPMasker
from masking.session import session_key

__all__ = ["MaskClient", "SessionKey"]

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_V4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
_FULL32 = (1 << 32) - 1


def _v4_mask(bits: int) -> int:
    return _FULL32 ^ ((1 << (32 - bits)) - 1) if bits else 0


class MaskClient:
    """Truncate the client address (``ip``); keep the full one in memory (``_ip``) for the key."""

    def __init__(self, settings: Settings) -> None:
        m = settings.masking
        self.maskers = {
            site.name: IPMasker(settings.for_site(site.name, "ipv4_keep_bits"),
                                settings.for_site(site.name, "ipv6_keep_bits"), m.trusted_proxies)
            for site in settings.sites
        }
        self.default = IPMasker(m.ipv4_keep_bits, m.ipv6_keep_bits, m.trusted_proxies)
        self.v4_masks = {name: _v4_mask(mk.ipv4_keep_bits) for name, mk in self.maskers.items()}
        self.default_v4 = _v4_mask(self.default.ipv4_keep_bits)
        self.cache = BoundedCache(65536)

    def exact(self, site: str | None, raw: str | None, forwarded_for: str | None
              ) -> tuple[str | None, str | None, str | None]:
        """(masked, full ip, reason when there is no address) by the exact masker."""
        if site is None:  # the plain-IPv4 rows, done on the column
            return None, None, None
        if raw is None or raw == "":
            raise RecordError("missing client address")
        masker = self.maskers.get(site or "", self.default)
        try:
            client = masker.client(str(raw), forwarded_for)
        except AddressError as exc:
            raise RecordError(str(exc)) from None
        return client.masked, client.ip, client.reason if client.ip is None else None

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = batch.frame
        plain = pl.col("forwarded_for").is_null() & pl.col("client").str.contains(_PLAIN_V4)
        df = df.with_columns(
            _plain=plain,
            _m_site=pl.when(plain).then(None).otherwise(pl.col("site")),
            _m_client=pl.when(plain).then(None).otherwise(pl.col("client")),
            _m_ff=pl.when(plain).then(None).otherwise(pl.col("forwarded_for")),
        )
        df = map_distinct(df, ["_m_site", "_m_client", "_m_ff"], self.exact,
                          {"_x_masked": pl.String(), "_x_ip": pl.String(),
                           "_reason": pl.String()}, self.cache)
        good, rejects = split_errors(df)
        octets = pl.col("client").str.split_exact(".", 3)
        as_int = (octets.struct.field("field_0").cast(pl.Int64, strict=False) * 16777216
                  + octets.struct.field("field_1").cast(pl.Int64, strict=False) * 65536
                  + octets.struct.field("field_2").cast(pl.Int64, strict=False) * 256
                  + octets.struct.field("field_3").cast(pl.Int64, strict=False))
        site_mask = pl.col("site").replace_strict(self.v4_masks, default=self.default_v4,
                                                  return_dtype=pl.Int64)
        masked = as_int & site_mask
        text = pl.concat_str(
            [(masked // 16777216).cast(pl.String), ((masked // 65536) % 256).cast(pl.String),
             ((masked // 256) % 256).cast(pl.String), (masked % 256).cast(pl.String)],
            separator=".")
        good = good.with_columns(
            ip=pl.when(pl.col("_plain")).then(text).otherwise(pl.col("_x_masked")),
            _ip=pl.when(pl.col("_plain")).then(pl.col("client")).otherwise(pl.col("_x_ip")),
        ).drop("_plain", "_m_site", "_m_client", "_m_ff", "_x_masked", "_x_ip")
        return batch.with_frame(good), rejects


class SessionKey:
    """HMAC of (site, hint) or (site, full address or its reason, agent): once per distinct."""

    def __init__(self, settings: Settings, keyring: KeyRing, cache_size: int = 65536) -> None:
        self.keyring = keyring
        self.hint_fields = tuple(settings.sessions.hint_fields)
        self.cache = BoundedCache(cache_size)

    def _hint(self, df: pl.DataFrame) -> pl.Expr:
        parts = []
        for name in self.hint_fields:
            if name not in df.columns:
                continue
            col = pl.col(name)
            if df.schema[name] != pl.String:
                col = col.map_elements(lambda v: str(v) if v else None, return_dtype=pl.String)
            parts.append(pl.when(col != "").then(col))
        if not parts:
            return pl.lit(None, dtype=pl.String)
        return pl.coalesce(parts)

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        secret = self.keyring.current().secret
        df = batch.frame.with_columns(
            _who=pl.coalesce(pl.col("_ip"), pl.col("_reason"), pl.lit("")),
            _hint=self._hint(batch.frame),
        )

        def key(site: str, who: str, agent: str | None, hint: str | None) -> tuple[str]:
            return (session_key(secret, site, who, agent, hint),)

        df = map_distinct(df, ["site", "_who", "user_agent", "_hint"], key,
                          {"session_key": pl.String()}, self.cache, (secret,))
        good, rejects = split_errors(df)
        return batch.with_frame(good.drop("_who", "_hint", "_reason")), rejects
