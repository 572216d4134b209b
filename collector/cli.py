"""The ``lethelog`` command: ``serve`` and the tools around it.

Each subcommand registers itself in ``COMMANDS`` with a function that adds its arguments and one
that runs it; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from collector.log import MaskedAccessLogger, configure_logging
from collector.settings import Settings, SettingsError, load_settings

Runner = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]
            ) -> Callable[[Runner], Runner]:
    def register(fn: Runner) -> Runner:
        COMMANDS[name] = (help, args, fn)
        return fn

    return register


def add_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (server.data_dir)")


def settings_from(ns: argparse.Namespace, **more: Any) -> Settings:
    overrides = {"server.data_dir": getattr(ns, "data_dir", None), **more}
    return load_settings(getattr(ns, "config", None), overrides=overrides)


def _serve_args(p: argparse.ArgumentParser) -> None:
    add_settings_args(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (server.listen)")


@command("serve", "run the collector", _serve_args)
def serve(ns: argparse.Namespace) -> int:
    from aiohttp import web

    from collector.app import create_app
    from collector.appkeys import GEO
    from collector.tls import server_ssl_context

    settings = settings_from(ns, **{"server.listen": ns.listen})
    configure_logging(settings.server.log_level)
    log = structlog.get_logger("lethelog")
    app = create_app(settings)

    async def on_startup(app: web.Application) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: app[GEO].reload())
        except (NotImplementedError, RuntimeError):
            pass
        log.info("listening", listen=settings.server.listen,
                 data_dir=str(settings.server.data_dir), tls=settings.server.tls_cert is not None)

    app.on_startup.append(on_startup)
    web.run_app(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        access_log_class=MaskedAccessLogger,
        print=None,
        shutdown_timeout=settings.server.shutdown_timeout,
        ssl_context=server_ssl_context(settings),
    )
    log.info("stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # Importing the command modules registers them.
    from collector import commands  # noqa: F401

    parser = argparse.ArgumentParser(
        prog="lethelog", description="Privacy-first access-log pipeline: ingest, mask, enrich, "
        "keep per session, forget.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    _, _, run = COMMANDS[ns.command]
    try:
        return run(ns)
    except SettingsError as exc:
        print(f"lethelog: bad setting: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def existing_path(text: str) -> Path:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return p
