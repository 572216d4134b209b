"""Syslog ingest against HTTP on the same lines: records/s committed, as ratios of one run each.

Usage::

    .venv/bin/python bench/syslog_ingest.py [-n 50000] [--udp-rate 5000]

Against a fresh ``lethelog serve`` subprocess each (default settings, loopback, no tokens):

1. **HTTP**: ``lethelog ship FILE`` (1,000-line gzip batches, one in flight) until it exits.
2. **syslog TCP**: one connection, every line RFC 3164 + octet counting, sent as fast as the
   service reads (backpressure), until ``/metrics`` shows every line accepted or rejected.
3. **syslog UDP, blast**: every line as one datagram as fast as one socket sends; what arrived.
4. **syslog UDP, paced** at ``--udp-rate`` datagrams/s: what arrived.

Lines come from ``bench/gen_log.py`` (real-looking clients and agents).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service import ServiceProcess, free_port  # noqa: E402


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def settled(url: str) -> float:
    return (metric(url, "lethelog_records_accepted_total")
            + metric(url, "lethelog_records_rejected_total"))


def service(tmp: Path, name: str, tcp: int, udp: int) -> ServiceProcess:
    return ServiceProcess(tmp / name, tmp / f"{name}.log", env={
        "LETHELOG_SYSLOG_TCP": f"127.0.0.1:{tcp}", "LETHELOG_SYSLOG_UDP": f"127.0.0.1:{udp}"})


def wait_settled(url: str, n: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while settled(url) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out at {settled(url):.0f}/{n}")
        time.sleep(0.05)
    return time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--udp-rate", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "access.log"
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_log.py"), "-n", str(args.n),
                        "-o", str(log)], check=True, capture_output=True)
        lines = log.read_bytes().splitlines()
        n = len(lines)
        frames = [b"<190>Nov 27 10:00:00 web1 nginx: " + line for line in lines]
        results: dict[str, float] = {}

        tcp, udp = free_port(), free_port()
        svc = service(tmp, "http", tcp, udp)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "collector", "ship", str(log), "--url", svc.url,
                        "--state-dir", str(tmp / "st"), "--progress", "never", "--quiet"],
                       check=True, cwd=ROOT)
        results["http"] = n / (time.monotonic() - t0)
        svc.stop()

        tcp, udp = free_port(), free_port()
        svc = service(tmp, "tcp", tcp, udp)
        stream = b"".join(b"%d " % len(f) + f for f in frames)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(stream)
        results["tcp"] = n / (wait_settled(svc.url, n) - t0)
        svc.stop()

        for mode in ("blast", "paced"):
            tcp, udp = free_port(), free_port()
            svc = service(tmp, f"udp-{mode}", tcp, udp)
            count = n if mode == "blast" else min(n, args.udp_rate * 4)
            t0 = time.monotonic()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i, f in enumerate(frames[:count]):
                    s.sendto(f, ("127.0.0.1", udp))
                    if mode == "paced" and i % 100 == 99:
                        time.sleep(max(0.0, t0 + (i + 1) / args.udp_rate - time.monotonic()))
            time.sleep(2.0)
            got = settled(svc.url)
            results[f"udp_{mode}_sent"] = count
            results[f"udp_{mode}_kept"] = got
            results[f"udp_{mode}_dropped_by_lethelog"] = metric(
                svc.url, "lethelog_syslog_udp_dropped")
            svc.stop()

    print(f"lines: {n} (bench/gen_log.py)")
    print(f"HTTP (lethelog ship, 1000-line gzip batches): {results['http']:,.0f} records/s")
    print(f"syslog TCP (one connection, octet counting):   {results['tcp']:,.0f} records/s")
    print(f"ratio syslog TCP / HTTP: {results['tcp'] / results['http']:.2f}")
    for mode in ("blast", "paced"):
        sent, kept = results[f"udp_{mode}_sent"], results[f"udp_{mode}_kept"]
        print(f"syslog UDP {mode}: sent {sent:,.0f}, kept {kept:,.0f} "
              f"({kept / sent:.1%}); dropped by lethelog (counted): "
              f"{results[f'udp_{mode}_dropped_by_lethelog']:,.0f}; the rest lost in the kernel")


if __name__ == "__main__":
    main()
