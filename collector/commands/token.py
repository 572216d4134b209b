"""``lethelog token new NAME --roles ROLE[,ROLE]``: print a fresh token once, and its config."""

from __future__ import annotations

import argparse

from collector.auth import new_token
from collector.cli import command
from collector.settings import ROLES


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="token_command", required=True)
    new = sub.add_parser("new", help="create a token")
    new.add_argument("name")
    new.add_argument("--roles", default="shipper",
                     help=f"comma-separated roles from {', '.join(ROLES)} (default shipper)")
    new.add_argument("--networks", default="", help="comma-separated CIDR allowlist")
    new.add_argument("--sites", default=None, help="comma-separated site names (default: all)")


@command("token", "create access tokens", _args)
def run(ns: argparse.Namespace) -> int:
    roles = [r.strip() for r in ns.roles.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise SystemExit(f"lethelog token: unknown role {bad[0] if bad else ''!r}; "
                         f"choose from {', '.join(ROLES)}")
    token, digest = new_token()
    print(f"# token for {ns.name} (shown once; store it in the shipper's secret store):")
    print(f"# {token}")
    print("[[tokens]]")
    print(f'name = "{ns.name}"')
    print("roles = [" + ", ".join(f'"{r}"' for r in roles) + "]")
    print(f'sha256 = "{digest}"')
    nets = [n.strip() for n in ns.networks.split(",") if n.strip()]
    if nets:
        print("networks = [" + ", ".join(f'"{n}"' for n in nets) + "]")
    if ns.sites is not None:
        sites = [n.strip() for n in ns.sites.split(",") if n.strip()]
        print("sites = [" + ", ".join(f'"{n}"' for n in sites) + "]")
    return 0
