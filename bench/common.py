"""Shared by the benchmark scripts: machine facts, medians, peak RSS of a process tree, and
writing one ``## section`` of ``bench/RESULTS.md`` without touching the others."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
DATA = ROOT / "bench" / "data"
PY = sys.executable


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores (nproc), {model}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """``median (min–max, n runs)``."""
    med = statistics.median(values)
    return (f"{fmt.format(med)} (min {fmt.format(min(values))}, max {fmt.format(max(values))}, "
            f"{len(values)} runs)")


def portable(text: str) -> str:
    """``text`` without this machine's absolute paths: the interpreter as ``.venv/bin/python``,
    the installed packages as ``<site-packages>``, the checkout as relative paths and the corpus
    as ``../shared/...`` (tests/test_no_machine_paths.py keeps committed files free of them)."""
    site = next((p for p in sys.path if p.endswith("site-packages")), None)
    swaps = [(sys.executable, ".venv/bin/python")]
    if site:
        swaps.append((site, "<site-packages>"))
    swaps += [(str(ROOT) + "/", ""), (str(ROOT.parent) + "/", "../"), (str(ROOT), ".")]
    for old, new in swaps:
        text = text.replace(old, new)
    return text


def command_line(argv: Sequence[str]) -> str:
    return portable(" ".join(a if re.fullmatch(r"[\w./=:,+-]+", a) else repr(a) for a in argv))


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out.extend(_tree(int(c)))
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size: pages shared with the other processes (fork) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return _rss_kib(pid)


def peak_hwm_kib(pid: int) -> int:
    """Peak RSS of one live process (VmHWM), KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRSS:
    """Samples the summed RSS (and PSS) of a process and its descendants every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.peak_pss_kib = 0
        self.peak_parent_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            total = sum(_rss_kib(p) for p in pids)
            self.peak_kib = max(self.peak_kib, total)
            self.peak_pss_kib = max(self.peak_pss_kib, sum(_pss_kib(p) for p in pids))
            self.peak_parent_kib = max(self.peak_parent_kib, peak_hwm_kib(self.pid))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> tuple[float, int, int, str]:
    """Run ``argv``; (wall seconds, peak tree RSS KiB, peak tree PSS KiB, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd)
    rss = TreeRSS(proc.pid)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{command_line(argv)} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-2000:]}")
    return elapsed, rss.peak_kib, rss.peak_pss_kib, out.decode(errors="replace")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def ensure_log(lines: int, path: Path | None = None) -> Path:
    """The generated benchmark log of ``lines`` lines (made once, then reused)."""
    path = path or DATA / f"access-{lines}.log"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, str(ROOT / "bench" / "gen_log.py"), "-n", str(lines), "-o",
                        str(path)], check=True)
    return path


def profile_table(path: Path | str, limit: int = 14) -> str:
    """Top ``limit`` functions by own time of a saved cProfile file, paths made relative."""
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(limit)
    body = buf.getvalue()
    table = body[body.find("   ncalls"):].rstrip()
    return "\n".join(line.replace(str(ROOT) + "/", "") for line in table.splitlines())


def write_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## heading`` section of RESULTS.md; other sections untouched."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"## {heading}\n\n{portable(body.strip())}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
