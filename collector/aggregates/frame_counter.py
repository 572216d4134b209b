"""The aggregates counted on columns: a batch's per-minute counts are group-bys, then one
UPSERT per group.

:class:`FrameAggregator` is the store writer's counter. It keeps the rules of
:class:`~collector.aggregates.counter.Aggregator` (docs/aggregates.md): every dimension's value by
``masking.vocab`` (once per distinct value), the path template under its own name only once k
distinct sessions used it (walked in arrival order over the rows whose path is not yet k-safe,
the same ``_path`` bookkeeping), ``sessions_new`` once per (session, group), ``sessions_active``
once per (session, group, minute) within a site's recent window, ``paths_4xx`` per new 4xx path
template and ``targets_4xx`` sketches (``aggregates/targets.py``), fed in arrival order.

What changes is how: the session-independent counters (requests, bytes, statuses, bots,
anonymizers, request-time histogram and sum) are one group-by per (minute, site, dimension,
value) over the batch in long form; "is this session new to this group" is one set difference of
integer codes (``sid << 32 | group id``) against the codes already counted, instead of one set
check per record and group. Request-time sums are added in arrival order (a cumulative sum per
group), so a batch's float sum is the one the record-at-a-time counter gives.

Pruning of the recent-minute memory happens once per batch, after it (the record-at-a-time counter
prunes as the newest minute moves): the two differ only for a site more than ``LAG_MEMORY``
behind the newest one, whose recent rows the counter then no longer remembers either way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container, Sequence

import polars as pl

from collector.aggregates.counter import (
    _NAMES,
    _PATH_POS,
    ACTIVE_WINDOW,
    RARE_MEMORY,
    Aggregator,
    Partial,
    stored_value,
)
from collector.aggregates.schema import COUNTERS, DIMS, IDX, PATH_DIMS, RT_EDGES, UPSERT
from collector.record import Record

_N = len(COUNTERS)
_I_P4 = IDX["paths_4xx"]
_SHIFT = 32
_FIELDS = ("", *DIMS.values())  # record field of each group (the total has none)
_KEY = ["t", "site", "dim", "value"]
_SUMMED = [c for c in COUNTERS if c not in ("sessions_new", "sessions_active", "paths_4xx",
                                            "targets_4xx")]
_ANON = {"is_vpn": "anon_vpn", "is_tor": "anon_tor", "is_anonymous_proxy": "anon_proxy",
         "is_hosting": "anon_hosting"}
_FRAME_COLS = ("time", "site", "status", "bytes", "is_bot", "request_time", "path", *_ANON,
               *{f for f in DIMS.values()})


def _text(name: str) -> pl.Expr:
    """A field as the record-at-a-time counter reads it: ``""`` when null or empty."""
    return pl.col(name).cast(pl.String).fill_null("")


class FrameAggregator(Aggregator):
    """:class:`Aggregator` whose ``add`` works on a whole batch at once (see the module)."""

    def __init__(self, ipv4_bits: int = 24, ipv6_bits: int = 48, k: int = 5,
                 site_k: dict[str, int] | None = None) -> None:
        super().__init__(ipv4_bits, ipv6_bits, k, site_k)
        self.gids: dict[tuple[str, str], int] = {}  # (dim, value) -> group id
        self.codes: set[int] = set()  # sid << 32 | gid: session counted in group
        self.code_sids: set[int] = set()  # sessions with codes in self.codes
        # minute -> site -> codes counted active in that minute
        self.active_codes: dict[int, dict[str, set[int]]] = {}
        self.frames: list[pl.DataFrame] = []  # pending counts of batches, summed at flush

    # ------------------------------------------------------------------ counting

    def add(self, records: Sequence[Record] | pl.DataFrame, sids: Sequence[int | None],
            partial: Partial | None = None) -> None:
        """Count a batch (``sids[i]``: the session of row i, None when it has none).
        ``partial`` is not needed here (everything is counted on columns) and is ignored."""
        if isinstance(records, pl.DataFrame):
            df = records
        else:
            from collector.store.frame import to_frame

            df = to_frame(list(records))
        self.add_frame(df, pl.Series("sid", list(sids), dtype=pl.Int64))

    def add_frame(self, df: pl.DataFrame, sids: pl.Series) -> None:
        if df.height == 0:
            return
        status = pl.col("status").cast(pl.Int64, strict=False).fill_null(0)
        site = _text("site")
        base = df.select(
            pl.int_range(df.height, dtype=pl.Int64).alias("i"),
            sids.alias("sid"),
            pl.col("time").cast(pl.Float64, strict=False).alias("time"),
            pl.when(site == "").then(pl.lit("default")).otherwise(site).alias("site"),
            status.alias("status"),
            *[pl.col(c) for c in _FRAME_COLS if c not in ("time", "site", "status")],
        ).filter(pl.col("time").is_not_null() & pl.col("time").is_not_nan())
        if base.height == 0:
            return
        base = base.with_columns(
            (pl.col("time").floor().cast(pl.Int64) // 60 * 60).alias("t"))
        self._targets(base)
        base = self._values(base)
        base = self._k_paths(base)
        base = self._recent(base)
        long = self._long(base)
        frames = [self._summed(base, long)]
        new = self._sessions_new(long)
        if new is not None:
            frames.append(new)
        fresh = self._sessions_active(long)
        if fresh is not None:
            frames.append(fresh)
        self._scans(base)
        self.frames.extend(frames)
        self._prune_after()

    def _targets(self, base: pl.DataFrame) -> None:
        four = base.filter((pl.col("status") >= 400) & (pl.col("status") < 500))
        if four.height == 0:
            return
        ip = _text("ip")
        net = (pl.when(ip == "").then(pl.lit("")).otherwise(
            ip + pl.when(ip.str.contains(":", literal=True)).then(pl.lit(f"/{self.v6}"))
            .otherwise(pl.lit(f"/{self.v4}"))))
        rows = four.select("t", "site", net, _text("asn"), _text("path"), "status")
        self.targets.add_rows(rows.iter_rows())

    def _values(self, base: pl.DataFrame) -> pl.DataFrame:
        """``g0``..``g10``: each group's stored value (``masking.vocab``, per distinct value)."""
        out = [pl.lit("").alias("g0")]
        for j, (dim, field) in enumerate(DIMS.items(), 1):
            raw = _text(field)
            if dim == "network":
                raw = pl.when(raw == "").then(pl.lit("")).otherwise(
                    raw + pl.when(raw.str.contains(":", literal=True))
                    .then(pl.lit(f"/{self.v6}")).otherwise(pl.lit(f"/{self.v4}")))
            out.append(raw.alias(f"g{j}"))
        base = base.with_columns(out)
        mapped = []
        for j, dim in enumerate(DIMS, 1):
            distinct = base[f"g{j}"].unique().to_list()
            mapping = {v: stored_value(dim, v) for v in distinct if v}
            if any(k != v for k, v in mapping.items()):
                mapped.append(pl.col(f"g{j}").replace(mapping))
        return base.with_columns(mapped) if mapped else base

    def _k_paths(self, base: pl.DataFrame) -> pl.DataFrame:
        """The path template under its own name once k sessions used it, else ``"other"``:
        rows whose (site, path) is not yet k-safe go through ``_path`` in arrival order."""
        g = f"g{_PATH_POS}"
        pairs = base.filter(pl.col(g) != "").select("site", g).unique()
        safe = self.safe_paths
        unsafe = [(s, p) for s, p in pairs.iter_rows() if (s, p) not in safe]
        if not unsafe:
            return base
        keys = pl.DataFrame(unsafe, schema={"site": pl.String, g: pl.String}, orient="row")
        part = base.join(keys, on=["site", g], how="semi", maintain_order="left")
        path = self._path
        values = [path(s, p, sid, t) for s, p, sid, t in
                  part.select("site", g, "sid", "t").iter_rows()]
        fixed = part.select("i").with_columns(pl.Series("k_value", values, dtype=pl.String))
        return base.join(fixed, on="i", how="left", maintain_order="left").with_columns(
            pl.coalesce("k_value", g).alias(g)).drop("k_value")

    def _recent(self, base: pl.DataFrame) -> pl.DataFrame:
        """Whether each row is within its site's recent window (the site's newest minute so
        far, this row included, in arrival order); the newest minutes move on."""
        prior = self.site_newest
        sites = base["site"].unique().to_list()
        before = pl.col("site").replace_strict({s: prior.get(s, 0) for s in sites},
                                               return_dtype=pl.Int64)
        base = base.with_columns(
            pl.max_horizontal(pl.col("t").cum_max().over("site"), before).alias("site_newest"))
        base = base.with_columns(
            (pl.col("t") > pl.col("site_newest") - ACTIVE_WINDOW * 60).alias("recent"))
        for s, m in base.group_by("site").agg(pl.col("t").max()).iter_rows():
            if m > prior.get(s, 0):
                prior[s] = m
        old = self.newest
        steps = base.select(pl.col("t").cum_max().unique())["t"].to_list()
        hours = [m for m in steps if m > old and m % 3600 == 0]
        self.newest = max(old, *steps)
        if hours:
            cut = max(hours) - RARE_MEMORY
            self.rare = {key: v for key, v in self.rare.items() if v[1] >= cut}
        return base

    def _long(self, base: pl.DataFrame) -> pl.DataFrame:
        """One row per (record, group), with the group's id."""
        parts = [base.select("i", "sid", "t", "site", "recent",
                             pl.lit(name).alias("dim"), pl.col(f"g{j}").alias("value"))
                 for j, name in enumerate(_NAMES)]
        long = pl.concat(parts)
        pairs = long.select("dim", "value").unique()
        gids = self.gids
        ids = []
        for pair in pairs.iter_rows():
            gid = gids.get(pair)
            if gid is None:
                gid = gids[pair] = len(gids) + 1
            ids.append(gid)
        del gids
        pairs = pairs.with_columns(pl.Series("gid", ids, dtype=pl.Int64))
        return long.join(pairs, on=["dim", "value"], how="left", maintain_order="left")

    def _summed(self, base: pl.DataFrame, long: pl.DataFrame) -> pl.DataFrame:
        st = pl.col("status")
        rt = pl.col("request_time").cast(pl.Float64, strict=False)
        ok_rt = (rt >= 0).fill_null(False) & ~rt.is_nan().fill_null(True)
        b = pl.col("bytes").cast(pl.Int64, strict=False)
        deltas = [pl.lit(1, dtype=pl.Int64).alias("requests"),
                  pl.when(b > 0).then(b).otherwise(0).fill_null(0).alias("bytes")]
        for c in range(1, 6):
            deltas.append(((st >= c * 100) & (st < c * 100 + 100)).cast(pl.Int64)
                          .alias(f"s{c}xx"))
        for code in (401, 403, 404):
            deltas.append((st == code).cast(pl.Int64).alias(f"s{code}"))
        deltas.append(pl.col("is_bot").cast(pl.Boolean, strict=False).fill_null(False)
                      .cast(pl.Int64).alias("bots"))
        for flag, name in _ANON.items():
            deltas.append(pl.col(flag).cast(pl.Boolean, strict=False).fill_null(False)
                          .cast(pl.Int64).alias(name))
        deltas.append(ok_rt.cast(pl.Int64).alias("rt_count"))
        deltas.append(pl.when(ok_rt).then(rt).otherwise(0.0).alias("rt_sum"))
        lo = None
        for j, edge in enumerate(RT_EDGES):
            cond = ok_rt & (rt <= edge) if lo is None else ok_rt & (rt <= edge) & (rt > lo)
            deltas.append(cond.cast(pl.Int64).alias(f"rt_{j}"))
            lo = edge
        deltas.append((ok_rt & (rt > RT_EDGES[-1])).cast(pl.Int64)
                      .alias(f"rt_{len(RT_EDGES)}"))
        per_row = base.select("i", *deltas)
        joined = long.select("i", *_KEY).join(per_row, on="i", how="left",
                                              maintain_order="left")
        return joined.group_by(_KEY, maintain_order=True).agg(
            *[pl.col(c).sum() for c in _SUMMED if c != "rt_sum"],
            pl.col("rt_sum").cum_sum().last(),  # in arrival order, as the record path adds
        )

    def _sessions_new(self, long: pl.DataFrame) -> pl.DataFrame | None:
        with_sid = long.filter(pl.col("sid").is_not_null()).with_columns(
            (pl.col("sid") * (1 << _SHIFT) + pl.col("gid")).alias("code"))
        if with_sid.height == 0:
            return None
        firsts = with_sid.unique(subset="code", keep="first", maintain_order=True)
        new = set(firsts["code"].to_list()).difference(self.codes)
        if not new:
            return None
        self.codes.update(new)
        self.code_sids.update(firsts["sid"].unique().to_list())
        return firsts.filter(pl.col("code").is_in(list(new))).group_by(
            _KEY, maintain_order=True).agg(pl.len().cast(pl.Int64).alias("sessions_new"))

    def _sessions_active(self, long: pl.DataFrame) -> pl.DataFrame | None:
        rec = long.filter(pl.col("sid").is_not_null() & pl.col("recent")).with_columns(
            (pl.col("sid") * (1 << _SHIFT) + pl.col("gid")).alias("code"))
        if rec.height == 0:
            return None
        firsts = rec.unique(subset=["t", "site", "code"], keep="first", maintain_order=True)
        parts = []
        for (minute, site), part in firsts.group_by(["t", "site"], maintain_order=True):
            have = self.active_codes.setdefault(int(minute), {}).setdefault(str(site), set())
            new = set(part["code"].to_list()).difference(have)
            if new:
                have.update(new)
                parts.append(part.filter(pl.col("code").is_in(list(new))))
        if not parts:
            return None
        return pl.concat(parts).group_by(_KEY, maintain_order=True).agg(
            pl.len().cast(pl.Int64).alias("sessions_active"))

    def _scans(self, base: pl.DataFrame) -> None:
        """``paths_4xx``: a 4xx path template new to a network's or ASN's recent minute."""
        rows = base.filter(pl.col("recent") & (pl.col("status") >= 400)
                           & (pl.col("status") < 500) & (_text("path_template") != ""))
        if rows.height == 0:
            return
        cols = [f"g{_NAMES.index(d)}" for d in sorted(PATH_DIMS)]
        dims = sorted(PATH_DIMS)
        pending = self.pending
        for minute, site, path, *values in rows.select(
                "t", "site", "path_template", *cols).iter_rows():
            by_group = self.paths.setdefault(minute, {})
            for dim, value in zip(dims, values, strict=True):
                ps = by_group.setdefault((site, dim, value), set())
                if path not in ps:
                    ps.add(path)
                    key = (minute, site, dim, value)
                    row = pending.get(key)
                    if row is None:
                        row = pending[key] = [0.0] * _N
                    row[_I_P4] += 1

    def _prune_after(self) -> None:
        horizon = self._horizon()
        for m in [m for m in self.active_codes if m <= horizon]:
            del self.active_codes[m]
        for m in [m for m in self.paths if m <= horizon]:
            del self.paths[m]

    def flush(self, conn: sqlite3.Connection, wall: float) -> int:
        """Upsert the batches' counts, one row per (minute, site, dimension, value)."""
        from collector.aggregates.counter import add_targets

        add_targets(self.pending, self.targets.drain())
        frames = [f.with_columns(pl.col(c).cast(pl.Float64) for c in f.columns
                                 if c not in _KEY) for f in self.frames]
        if self.pending:
            frames.append(pl.DataFrame(
                [(*k, *v) for k, v in self.pending.items()],
                schema={"t": pl.Int64, "site": pl.String, "dim": pl.String,
                        "value": pl.String, **{c: pl.Float64 for c in COUNTERS}},
                orient="row"))
        self.frames, self.pending = [], {}
        if not frames:
            return 0
        merged = pl.concat(frames, how="diagonal_relaxed")
        merged = merged.with_columns(pl.lit(0.0).alias(c) for c in COUNTERS
                                     if c not in merged.columns)
        total = merged.group_by(
            _KEY, maintain_order=True).agg(
            *[pl.col(c).fill_null(0.0).sum() for c in COUNTERS])
        total = total.select(
            "t", pl.lit(60, dtype=pl.Int64).alias("res"), "site", "dim", "value",
            *[pl.col(c).cast(pl.Float64 if c == "rt_sum" else pl.Int64) for c in COUNTERS],
            pl.lit(wall, dtype=pl.Float64).alias("updated"))
        conn.executemany(UPSERT, total.iter_rows())
        return total.height

    # ------------------------------------------------------------------ memory upkeep

    def forget(self, live: Container[int]) -> None:
        """Sessions no longer live: their codes are dropped once they are many (a session id is
        never handed out twice by a running store, so a dead session's codes never match)."""
        dead = [s for s in self.code_sids if s not in live]
        if len(dead) * 2 < len(self.code_sids) and len(dead) < 50_000:
            return
        gone = set(dead)
        self.code_sids.difference_update(gone)
        self.codes = {c for c in self.codes if (c >> _SHIFT) not in gone}

    def rebuild(self, conn: sqlite3.Connection) -> None:
        """The record-at-a-time rebuild, then its memory in codes."""
        super().rebuild(conn)
        self.frames = []
        self.codes, self.code_sids, self.active_codes = set(), set(), {}
        gid = self._gid
        seen, active = self.seen, self.active
        self.seen, self.active = {}, {}
        while seen:  # converted and freed one session at a time: a lower peak
            sid, groups = seen.popitem()
            self.code_sids.add(sid)
            self.codes.update(sid << _SHIFT | gid(g) for g in groups)
        while active:
            minute, by_session = active.popitem()
            per_site = self.active_codes.setdefault(minute, {})
            for (sid, site), groups in by_session.items():
                per_site.setdefault(site, set()).update(sid << _SHIFT | gid(g) for g in groups)

    def _gid(self, group: tuple[str, str]) -> int:
        gid = self.gids.get(group)
        if gid is None:
            gid = self.gids[group] = len(self.gids) + 1
        return gid
