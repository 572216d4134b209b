"""The least a Redis ACL user needs to run lethelog's Redis Cluster store.

``python -m collector.store.redis_acl [PREFIX]`` prints the ``ACL SETUSER`` rules (keys limited to
``<prefix>:*``, no pub/sub channels, only the commands below); docs/scale-out.md prints the same.

The commands are those the client sends itself (:data:`CLIENT_COMMANDS`) and those the Lua scripts
call (read from ``collector.store.redis_lua``, so a script that starts calling a new command
extends the list; ``tests/test_store_redis_tls.py`` runs the store as such a user).
"""

from __future__ import annotations

import re
import sys

from collector.store import redis_lua

# Sent by redis-py and the store itself (not from scripts). CLIENT SETINFO is tried by redis-py
# on connect and its refusal ignored, so it is not granted.
CLIENT_COMMANDS: tuple[str, ...] = (
    "cluster|slots",  # the slot map (RedisCluster.initialize)
    "cluster|shards",  # the same, on newer redis-py
    "command",  # redis-py reads the command table (key positions) when it connects
    "ping",
    "script|load",  # the store's scripts, loaded on every primary at start-up
    "evalsha",  # every write and sweep
    "hsetnx", "hget", "hgetall", "hmget",  # bucket count, log clocks, counts, aggregates
    "set", "mget",  # the shared pseudonymisation secrets
    "sadd", "smembers",  # the sites that have aggregates
    "zadd", "zrange", "zrangebyscore", "zrem",  # each site's index of aggregate hours
    "bgrewriteaof", "info", "cluster|nodes",  # erased bytes leave every node's AOF files
    "xrange", "xrevrange", "hdel",  # the detectors' live messages and anomaly pruning
)

# redis-py methods that are not Redis commands
NOT_COMMANDS = frozenset({"aclose", "close", "execute", "get_nodes", "initialize", "pipeline",
                          "execute_command", "reset", "get_random_node"})
# redis-py method names whose command is spelled differently
METHOD_COMMANDS = {"script_load": "script|load"}


def _lua_sources() -> list[str]:
    """Every Lua source in collector.store.redis_lua (its strings, and its dicts of them)."""
    from collector.detect.shared import SCRIPTS as DETECT_SCRIPTS

    out: list[str] = list(DETECT_SCRIPTS.values())  # the detector lease's scripts
    for value in vars(redis_lua).values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            out.extend(v for v in value.values() if isinstance(v, str))
    return out


def script_commands() -> tuple[str, ...]:
    """Every command the store's Lua scripts call, lower case, sorted."""
    found: set[str] = set()
    for src in _lua_sources():
        found.update(m.lower() for m in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", src))
        found.update(m.lower() for m in re.findall(r'redis\.p?call\(\s*"([A-Za-z]+)"', src))
    return tuple(sorted(found))


def commands() -> tuple[str, ...]:
    return tuple(sorted(set(CLIENT_COMMANDS) | set(script_commands())))


def acl_rules(prefix: str = "lethelog") -> str:
    """The rules after ``ACL SETUSER <name> on >PASSWORD`` for a lethelog user."""
    return " ".join(["resetkeys", f"~{prefix}:*", "resetchannels", "-@all",
                     *(f"+{c}" for c in commands())])


if __name__ == "__main__":  # pragma: no cover - a printing helper
    print(acl_rules(sys.argv[1] if len(sys.argv) > 1 else "lethelog"))
