"""``lethelog query 'EXPR'``: ask a running collector (``--url``) or a data directory.

Against a collector the query goes to ``GET /v1/query`` with the token read from
``--token-file`` (or ``LETHELOG_TOKEN``); against ``--data-dir`` (or ``--config``) the store file
is opened read-only, the same engine answers, and the query is written to the audit log in that
directory as token ``cli:<user>``. Output: a readable table (default), NDJSON, CSV or JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from collector.cli import add_settings_args, command, settings_from
from collector.query.output import FORMATS, render, table
from collector.query.run import Result
from collector.query.service import SOURCES

DEFAULT_URL = "http://127.0.0.1:8780"


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", metavar="EXPR", help="the query, e.g. 'status >= 500 last 1h | "
                   "count by path_template'")
    p.add_argument("--url", default=None,
                   help=f"collector to ask (default {DEFAULT_URL}, or LETHELOG_URL)")
    p.add_argument("--token-file", metavar="FILE", default=None,
                   help="file holding the bearer token (default: LETHELOG_TOKEN)")
    add_settings_args(p)
    p.add_argument("--format", dest="fmt", default="table", choices=("table", *FORMATS),
                   help="output: table (default), ndjson, csv or json")
    p.add_argument("--source", default="auto", choices=SOURCES,
                   help="answer from records, aggregates, or pick (auto, default)")


def _error(text: str, body: dict[str, Any] | None = None) -> None:
    print(f"lethelog query: {text}", file=sys.stderr)
    if body and "pointer" in body:
        print(f"  {body.get('query', '')}\n  {body['pointer']}", file=sys.stderr)


def _print(result: Result, fmt: str) -> None:
    if fmt == "table":
        sys.stdout.write(table(result.columns, result.rows))
        note = f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''} from " \
               f"{result.source}" + (" (cut at the row limit)" if result.truncated else "")
        print(note)
    else:
        sys.stdout.buffer.write(render(result, fmt))
        sys.stdout.flush()


def _remote(ns: argparse.Namespace) -> int:
    url = (ns.url or os.environ.get("LETHELOG_URL") or DEFAULT_URL).rstrip("/")
    token = os.environ.get("LETHELOG_TOKEN")
    if ns.token_file:
        try:
            token = Path(ns.token_file).read_text().strip()
        except OSError as exc:
            _error(f"--token-file: cannot read {ns.token_file}: {exc.strerror}")
            return 2
    params = {"q": ns.expr, "format": "json", "source": ns.source}
    req = urllib.request.Request(f"{url}/v1/query?{urllib.parse.urlencode(params)}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            err = orjson.loads(raw)
        except orjson.JSONDecodeError:
            err = {"error": raw.decode(errors="replace").strip()}
        _error(f"{exc.code}: {err.get('error', err)}", err)
        return 2 if exc.code == 400 else 1
    except (urllib.error.URLError, OSError) as exc:
        _error(f"cannot reach {url}: {getattr(exc, 'reason', exc)}")
        return 1
    result = Result(body["columns"], body["data"], body["truncated"],
                    body["elapsed_ms"] / 1000, body["source"])
    _print(result, ns.fmt)
    return 0


async def _on_cluster(settings: Any, answer: Any) -> Any:
    """Run ``answer(conn)`` through the redis store's read (the same SQL on a snapshot)."""
    from collector.metrics import Metrics
    from collector.store import open_store

    store = open_store(settings, Metrics())
    await store.start()
    try:
        return await store.read(answer)
    finally:
        await store.close()


def _local(ns: argparse.Namespace) -> int:
    from collector.aggregates.read import k_for
    from collector.audit import AuditLog
    from collector.query import QueryError, QueryTimeout, parse
    from collector.query.service import run_query
    from collector.store.sqlite import connect

    settings = settings_from(ns)
    data_dir = Path(settings.server.data_dir)
    db = data_dir / "lethelog.db"
    shared = settings.store.backend == "redis"  # the records live in the cluster
    if not shared and not db.is_file():
        _error(f"no store at {db} (is --data-dir right?)")
        return 1
    book = AuditLog.in_dir(data_dir, settings.audit.retention, settings.audit.fsync)
    who = dict(token=f"cli:{getpass.getuser()}", role="local", sites=None, peer=None,
               endpoint="cli:query", query=ns.expr)
    try:
        parsed = parse(ns.expr)
    except QueryError as exc:
        book.append(**who, rows=0, outcome="rejected")
        _error(str(exc), exc.to_json(ns.expr))
        return 2
    def answer(conn: sqlite3.Connection) -> Any:
        return run_query(conn, parsed, sites=None, timeout=settings.query.timeout,
                         max_rows=settings.query.max_rows, source=ns.source,
                         k=k_for(settings, None))

    conn = None if shared else connect(db, readonly=True)
    try:
        result = answer(conn) if conn is not None else asyncio.run(_on_cluster(settings, answer))
    except QueryError as exc:
        book.append(**who, rows=0, outcome="rejected")
        _error(str(exc), exc.to_json(ns.expr))
        return 2
    except QueryTimeout as exc:
        book.append(**who, rows=0, outcome="timeout")
        _error(str(exc))
        return 1
    except sqlite3.DatabaseError as exc:
        _error(f"cannot read {db}: {exc}")
        return 1
    finally:
        if conn is not None:
            conn.close()
    book.append(**who, rows=len(result.rows))
    _print(result, ns.fmt)
    return 0


@command("query", "query live records (or aggregates) of a collector or data directory", _args)
def run(ns: argparse.Namespace) -> int:
    if ns.data_dir or ns.config:
        if ns.url:
            _error("give either --url or --data-dir/--config, not both")
            return 2
        return _local(ns)
    return _remote(ns)
