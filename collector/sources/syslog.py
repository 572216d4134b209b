"""Syslog source: UDP and TCP (optionally TLS) listeners feeding the same pipeline and store.

What nginx's ``access_log syslog:server=HOST:PORT,tag=nginx FORMAT;`` sends (RFC 3164 over UDP),
and what rsyslog/syslog-ng/``logger`` forward over TCP (RFC 5424 or 3164, octet-counting or
LF framing). The message body is parsed with ``syslog.format``; records go through the same
``Pipeline`` and the same ``Store.write`` as ``POST /v1/logs``.

Delivery, per path:

* **TCP**: each connection is read in batches (``syslog.batch_size`` messages or
  ``syslog.flush_interval``); the next bytes are read only after the batch is committed, and
  while the store's queue is full the connection is simply not read, so the sender's TCP window
  closes (backpressure, nothing dropped). Syslog has no acknowledgement, so a connection broken
  or a service killed mid-batch loses that batch: **at-most-once per connection**. On shutdown
  the listener stops accepting, every connection stops reading, and what was read is committed.
* **UDP**: **best-effort**. Datagrams wait in a bounded buffer; when it is full, or when the
  store is busy, they are dropped and counted (``lethelog_syslog_udp_dropped``).
* Peers outside ``syslog.allowed_networks`` are refused (TCP: closed at once; UDP: dropped) and
  logged with their address masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import structlog
from aiohttp import web

from collector.auth import Networks
from collector.metrics import Metrics
from collector.parse import LineParser, compile_format
from collector.pipeline import Pipeline
from collector.settings import Settings, SettingsError, SyslogSettings, split_hostport
from collector.sources.http import reason_class
from collector.sources.syslogmsg import Framer, SyslogError, parse_message
from collector.store import Store, StoreBusy
from masking.ip import AddressError, IPMasker

log = structlog.get_logger("lethelog.syslog")

_masker = IPMasker(24, 48)
LOG_EVERY = 10.0  # seconds between two log events of the same kind (refusals, rejections)


def masked(peer: str | None) -> str | None:
    """A peer address truncated like a record's client address (for logs)."""
    if not peer:
        return None
    try:
        return _masker.mask(peer)
    except AddressError:
        return None


@dataclass
class Counters:
    received: int = 0  # frames (TCP) or datagrams (UDP) taken in
    stored: int = 0
    rejected: int = 0  # parse or pipeline errors
    malformed: int = 0  # not a syslog message
    dropped: dict[str, int] = field(default_factory=dict)  # reason → messages (UDP / oversize)
    refused: int = 0  # peers outside the allowlist
    busy_waits: int = 0  # TCP: times the store was full and reading paused
    lost: int = 0  # store failures

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "rejected": self.rejected,
                "malformed": self.malformed, "dropped": sum(self.dropped.values()),
                "dropped_by": dict(self.dropped), "refused": self.refused,
                "busy_waits": self.busy_waits, "lost": self.lost}


class _Throttle:
    """At most one log event of a kind every ``LOG_EVERY`` seconds, with the count in between."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def __call__(self, kind: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -LOG_EVERY) < LOG_EVERY:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return
        self.last[kind] = now
        log.warning(kind, suppressed=self.suppressed.pop(kind, 0), **fields)


def server_ssl_context(cfg: SyslogSettings) -> ssl.SSLContext | None:
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        if cfg.tls_client_ca is not None:
            ctx.load_verify_locations(str(cfg.tls_client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"syslog.tls_cert: cannot load certificate/key/CA: {exc}") from None
    return ctx


class SyslogReceiver:
    """The UDP and TCP listeners of ``[syslog]``; ``start()`` binds, ``close()`` drains."""

    def __init__(self, settings: Settings, pipeline: Pipeline, store: Store,
                 metrics: Metrics) -> None:
        self.cfg = settings.syslog
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics
        # syslog carries no token: the listener's own site scope stands in for a shipper's
        self.sites: frozenset[str] | None = frozenset(self.cfg.sites) if self.cfg.sites else None
        self.allowed = Networks(self.cfg.allowed_networks)
        self.parser: LineParser = compile_format(self.cfg.format)
        self.ssl = server_ssl_context(self.cfg)
        self.udp = Counters()
        self.tcp = Counters()
        self._throttle = _Throttle()
        self._closing = False
        self._tcp_server: asyncio.Server | None = None
        self._conns: dict[_TcpConnection, asyncio.Task[None]] = {}
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._udp_pending: list[bytes] = []
        self._udp_cap = max(1000, self.cfg.batch_size * 8)
        self._udp_wake = asyncio.Event()
        self._udp_flusher: asyncio.Task[None] | None = None
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.cfg.udp is not None:
            host, port = split_hostport(self.cfg.udp)
            sock = _udp_socket(host, port, self.cfg.udp_buffer)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=sock)
            self._udp_transport = transport
            self.udp_address = sock.getsockname()[:2]
            self._udp_flusher = asyncio.create_task(self._flush_udp_forever())
        if self.cfg.tcp is not None:
            host, port = split_hostport(self.cfg.tcp)
            self._tcp_server = await loop.create_server(
                lambda: _TcpConnection(self), host, port, reuse_address=True)
            self.tcp_address = self._tcp_server.sockets[0].getsockname()[:2]
        for name, text, read in (
            ("lethelog_syslog_udp_datagrams", "Syslog datagrams received.",
             lambda: self.udp.received),
            ("lethelog_syslog_udp_dropped", "Syslog datagrams dropped (buffer full, store busy, "
             "too long, not allowed).", lambda: sum(self.udp.dropped.values()) + self.udp.refused),
            ("lethelog_syslog_tcp_messages", "Syslog messages read over TCP.",
             lambda: self.tcp.received),
            ("lethelog_syslog_tcp_connections", "Open syslog TCP connections.",
             lambda: len(self._conns)),
            ("lethelog_syslog_tcp_refused", "Syslog TCP connections refused (network, limit).",
             lambda: self.tcp.refused),
            ("lethelog_syslog_tcp_busy_waits", "Times a syslog TCP reader paused: store busy.",
             lambda: self.tcp.busy_waits),
        ):
            self.metrics.gauge(name, text, read)
        log.info("syslog_listening", udp=_fmt(self.udp_address), tcp=_fmt(self.tcp_address),
                 tls=self.ssl is not None, format=self.parser.name, source=self.cfg.source,
                 allowed_networks=self.cfg.allowed_networks)

    async def close(self) -> None:
        """Stop accepting and reading, commit what was read, then return."""
        self._closing = True
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
        for conn in list(self._conns):
            conn.stop()
        if self._conns:
            await asyncio.gather(*self._conns.values(), return_exceptions=True)
        if self._udp_flusher is not None:
            self._udp_wake.set()
            await self._udp_flusher
        if self._tcp_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp_server.wait_closed(), 5.0)
        log.info("syslog_closed", udp=self.udp.as_dict(), tcp=self.tcp.as_dict())

    # ------------------------------------------------------------------ shared

    async def _commit(self, frames: list[bytes], counters: Counters, wait: bool) -> None:
        """Parse and store one batch. ``wait``: on a full queue, retry (TCP) or drop (UDP)."""
        records = self.prepare(frames, counters)
        if len(records):
            await self.store_records(records, counters, wait)

    def prepare(self, frames: list[bytes], counters: Counters) -> pl.DataFrame:
        """Syslog headers off, bodies parsed and run through the pipeline (CPU, no waiting)."""
        bodies: list[str] = []
        malformed = 0
        for frame in frames:
            try:
                bodies.append(parse_message(frame).body)
            except SyslogError:
                malformed += 1
        if malformed:
            counters.malformed += malformed
            self._throttle("syslog_malformed", malformed=counters.malformed)
        if not bodies:
            return pl.DataFrame()
        result = self.pipeline.process_lines(bodies, self.parser, source=self.cfg.source,
                                             sites=self.sites)
        if result.errors:
            counters.rejected += len(result.errors)
            for _, reason in result.errors:
                self.metrics.inc("lethelog_records_rejected_total", reason=reason_class(reason))
            self._throttle("syslog_records_rejected", rejected=len(result.errors),
                           first_error=result.errors[0][1], total=counters.rejected)
        return result.frame

    async def store_records(self, records: pl.DataFrame, counters: Counters, wait: bool) -> None:
        if await self._store(records, counters, wait):
            counters.stored += len(records)
            self.metrics.inc("lethelog_records_accepted_total", len(records))

    async def _store(self, records: pl.DataFrame, counters: Counters, wait: bool) -> bool:
        delay = 0.02
        while True:
            try:
                await self.store.write(records)
                return True
            except StoreBusy as exc:
                if not wait:
                    counters.drop("store_busy", len(records))
                    self._throttle("syslog_udp_dropped", reason="store_busy",
                                   dropped=sum(counters.dropped.values()))
                    return False
                counters.busy_waits += 1
                await asyncio.sleep(min(delay, exc.retry_after))
                delay = min(delay * 2, 1.0)
            except Exception as exc:  # a broken store must not kill the listener
                counters.lost += len(records)
                log.error("syslog_store_failed", error=type(exc).__name__, records=len(records))
                return False

    def _refuse(self, transport: str, peer: str | None, reason: str) -> None:
        self._throttle(f"syslog_refused_{transport}", transport=transport, reason=reason,
                       peer=masked(peer))

    # ------------------------------------------------------------------ UDP

    def on_datagram(self, data: bytes, addr: Any) -> None:
        c = self.udp
        c.received += 1
        peer = addr[0] if isinstance(addr, tuple) else None
        if not self.allowed.allows(peer):
            c.refused += 1
            self._refuse("udp", peer, "network not allowed")
            return
        if len(data) > self.cfg.max_message_size:
            c.drop("too_long")
            return
        if self._closing or len(self._udp_pending) >= self._udp_cap:
            c.drop("buffer_full")
            self._throttle("syslog_udp_dropped", reason="buffer_full",
                           dropped=sum(c.dropped.values()))
            return
        self._udp_pending.append(data)
        if len(self._udp_pending) >= self.cfg.batch_size:
            self._udp_wake.set()

    async def _flush_udp_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._udp_wake.wait(), self.cfg.flush_interval)
            self._udp_wake.clear()
            while self._udp_pending:
                batch = self._udp_pending[:self.cfg.batch_size]
                del self._udp_pending[:self.cfg.batch_size]
                try:
                    await self._commit(batch, self.udp, wait=False)
                except Exception as exc:  # keep the listener alive
                    self.udp.lost += len(batch)
                    log.error("syslog_batch_failed", transport="udp", error=type(exc).__name__)
                if len(self._udp_pending) < self.cfg.batch_size and not self._closing:
                    break
            if self._closing and not self._udp_pending:
                return

    # ------------------------------------------------------------------ TCP

    def admit(self, conn: _TcpConnection, peer: str | None) -> bool:
        if self._closing:
            return False
        if not self.allowed.allows(peer):
            self.tcp.refused += 1
            self._refuse("tcp", peer, "network not allowed")
            return False
        if len(self._conns) >= self.cfg.max_connections:
            self.tcp.refused += 1
            self._refuse("tcp", peer, "too many connections (syslog.max_connections)")
            return False
        return True


class _TcpConnection(asyncio.Protocol):
    """One syslog TCP connection: frames pile up in ``pending``; at ``batch_size`` reading is
    paused until the batch is committed (which waits while the store is busy)."""

    def __init__(self, rx: SyslogReceiver) -> None:
        self.rx = rx
        self.cfg = rx.cfg
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.framer = Framer(rx.cfg.max_message_size)
        self.pending: list[bytes] = []
        self.first_at = 0.0
        self.last_data = self.loop.time()
        self.wake = asyncio.Event()
        self.paused = False
        self.closed = False  # EOF, connection lost or a broken stream
        self.stopping = False  # service shutdown
        self.inflight: asyncio.Task[None] | None = None  # the batch being committed

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else None
        if not self.rx.admit(self, self.peer):
            self.closed = True
            transport.abort()
            return
        if self.rx.ssl is not None:
            transport.pause_reading()  # nothing reaches us before the TLS handshake
        self.rx._conns[self] = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_data = self.loop.time()
        try:
            frames = self.framer.feed(data)
        except SyslogError as exc:
            log.warning("syslog_stream_broken", reason=str(exc), peer=masked(self.peer))
            self._end()
            return
        if frames:
            if not self.pending:
                # the reader sleeps until the idle timeout while nothing is pending: wake it to
                # commit this batch within flush_interval on a connection that stays open
                self.first_at = self.last_data
                self.wake.set()
            self.pending.extend(frames)
            self.rx.tcp.received += len(frames)
            if len(self.pending) >= self.cfg.batch_size:
                self._pause()
                self.wake.set()

    def eof_received(self) -> bool | None:
        last = self.framer.finish()
        if last is not None and not self.closed:
            self.pending.append(last)
            self.rx.tcp.received += 1
        self._end()
        return True  # keep the transport: it is closed once the batch is committed

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        """Service shutdown: stop reading; what was read is still committed."""
        self.stopping = True
        self._pause()
        self.wake.set()

    def _end(self) -> None:
        self.closed = True
        self.wake.set()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self.paused = True

    def _resume(self) -> None:
        if (self.paused and not self.stopping and not self.closed
                and self.transport is not None and not self.transport.is_closing()):
            self.paused = False
            self.transport.resume_reading()

    async def _settle(self) -> None:
        """Wait for the batch in flight to be committed."""
        task = self.inflight
        if task is not None:
            await asyncio.shield(task)  # a cancelled caller still leaves it to finish
            self.inflight = None

    async def _serve(self) -> None:
        rx, cfg, c = self.rx, self.cfg, self.rx.tcp
        try:
            if rx.ssl is not None:
                assert self.transport is not None
                try:
                    tls = await self.loop.start_tls(
                        self.transport, self, rx.ssl, server_side=True,
                        ssl_handshake_timeout=min(10.0, cfg.idle_timeout))
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                    rx._refuse("tcp", self.peer, f"TLS handshake failed ({type(exc).__name__})")
                    return
                if tls is None:
                    return
                self.transport = tls
                self.last_data = self.loop.time()
            while True:
                now = self.loop.time()
                due = bool(self.pending) and (
                    len(self.pending) >= cfg.batch_size or self.closed or self.stopping
                    or now >= self.first_at + cfg.flush_interval)
                if due:
                    batch = self.pending[:cfg.batch_size]
                    del self.pending[:cfg.batch_size]
                    self.first_at = now
                    records = rx.prepare(batch, c)
                    # one batch commits while the next is read and parsed; the one before must
                    # be committed first (order kept, at most two batches in hand)
                    await self._settle()
                    if len(records):
                        self.inflight = self.loop.create_task(
                            rx.store_records(records, c, wait=True))  # waits while busy
                    if len(self.pending) < cfg.batch_size:
                        self._resume()
                    continue
                if self.closed or self.stopping:
                    await self._settle()
                    return
                if self.pending:
                    timeout = self.first_at + cfg.flush_interval - now
                else:
                    timeout = self.last_data + cfg.idle_timeout - now
                    if timeout <= 0:
                        log.info("syslog_connection_idle", seconds=cfg.idle_timeout,
                                 peer=masked(self.peer))
                        return
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(timeout, 0.0))
        finally:
            await self._settle()
            if self.pending:  # e.g. cancelled: what was read is still committed
                batch, self.pending = self.pending, []
                await rx._commit(batch, c, wait=True)
            if self.framer.oversized:
                c.drop("too_long", self.framer.oversized)
            if self.framer.truncated:
                c.drop("truncated", self.framer.truncated)
            rx._conns.pop(self, None)
            if self.transport is not None:
                self.transport.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receiver.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog_udp_error", error=type(exc).__name__)


def _udp_socket(host: str, port: int, buffer: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if buffer:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.bind(addr)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


SYSLOG: web.AppKey[SyslogReceiver] = web.AppKey("syslog", SyslogReceiver)
