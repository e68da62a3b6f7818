"""Benchmark: `pgtool archive-wal` versus a reference durable copy, per 16 MiB segment, side by side.

The reference is what contrib/basic_archive does, in plain Python started with `python3 -S`: copy to a
temporary in the archive, fsync, rename, fsync the directory. Both run as fresh processes, alternating
(ABBA order) on the same freshly written segment, into two archive directories that already hold
`--existing` archived names (archive-wal reads its directory to clean up stale temporaries).

The segments are synthetic but valid for archive-wal: a real long page header (system identifier,
segment size, page address matching the name) followed by random bytes, so nothing compresses by luck.

    python benchmarks/archive_wal.py --segments 200
    python benchmarks/archive_wal.py --segments 50 --compress zstd
    python benchmarks/archive_wal.py --reference /path/to/other_ref.py   # another reference script

Prints segments/second for both, the per-segment medians and the ratio (goal: at most 1.2x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEGMENT_SIZE = 16 * 1024 * 1024
SYSTEM_ID = 7311111111111111111

REFERENCE = """\
import os, shutil, sys
src, name, adir = sys.argv[1], sys.argv[2], sys.argv[3]
dst = os.path.join(adir, name)
tmp = os.path.join(adir, ".ref-tmp.%s.%d" % (name, os.getpid()))
with open(src, "rb") as fi, open(tmp, "wb") as fo:
    shutil.copyfileobj(fi, fo, 1 << 20)
    fo.flush()
    os.fsync(fo.fileno())
os.rename(tmp, dst)
fd = os.open(adir, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
"""


def segment_name(segno: int) -> str:
    return f"00000001{segno // 256:08X}{segno % 256:08X}"


def long_header(segno: int) -> bytes:
    """A PostgreSQL 15 long page header for segment `segno` (see pgtool.wal.header for the layout)."""
    return b"".join(
        [
            (0xD110).to_bytes(2, "little"),  # xlp_magic
            (0x0002).to_bytes(2, "little"),  # xlp_info: XLP_LONG_HEADER
            (1).to_bytes(4, "little"),  # xlp_tli
            (segno * SEGMENT_SIZE).to_bytes(8, "little"),  # xlp_pageaddr
            (0).to_bytes(4, "little") + bytes(4),  # xlp_rem_len + padding
            SYSTEM_ID.to_bytes(8, "little"),
            SEGMENT_SIZE.to_bytes(4, "little"),
            (8192).to_bytes(4, "little"),
        ]
    )


def pgtool_script() -> str:
    script = Path(sys.executable).parent / "pgtool"
    if script.exists():
        return str(script)
    found = shutil.which("pgtool")
    if not found:
        raise SystemExit("benchmark: the pgtool console script is not installed (pip install -e .)")
    return found


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=100, help="segments per side (default 100)")
    parser.add_argument("--existing", type=int, default=2000, help="names already in each archive (2000)")
    parser.add_argument("--compress", choices=("none", "zstd", "lz4"), default="none")
    parser.add_argument(
        "--payload-from",
        default=None,
        help="a real 16 MiB WAL segment whose bytes after the header are used (default: random bytes)",
    )
    parser.add_argument("--dir", default=None, help="scratch directory (default: a new one in $TMPDIR)")
    parser.add_argument("--reference", default=None, help="a reference script instead of the built-in one")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter for the reference (run with -S)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-wal-", dir=args.dir))
    try:
        ref_script = Path(args.reference) if args.reference else work / "ref_archive.py"
        if not args.reference:
            ref_script.write_text(REFERENCE)
        ref_dir, tool_dir = work / "ref", work / "pgtool"
        for d in (ref_dir, tool_dir):
            d.mkdir()
            for segno in range(args.existing):  # an archive that has been running for a while
                (d / segment_name(segno)).touch()
        src = work / "segment"
        payload = Path(args.payload_from).read_bytes() if args.payload_from else os.urandom(SEGMENT_SIZE)
        if len(payload) != SEGMENT_SIZE:
            raise SystemExit(f"benchmark: {args.payload_from} is not a 16 MiB segment")
        ref_argv = [args.python, "-S", str(ref_script)]
        tool_argv = [pgtool_script(), "archive-wal"]
        extra = ["--compress", args.compress] if args.compress != "none" else []
        ref_times: list[float] = []
        tool_times: list[float] = []
        for i in range(args.segments):
            segno = args.existing + i
            name = segment_name(segno)
            # A freshly written segment (in the page cache, as when PostgreSQL has just finished it).
            src.write_bytes(long_header(segno) + payload[40:])
            order = ("ref", "tool") if i % 2 == 0 else ("tool", "ref")
            for side in order:
                if side == "ref":
                    ref_times.append(run([*ref_argv, str(src), name, str(ref_dir)]))
                else:
                    tool_times.append(
                        run([*tool_argv, str(src), name, "--archive-dir", str(tool_dir), *extra])
                    )
            # Keep disk use flat: the archived copies are replaced by empty placeholders.
            for d in (ref_dir, tool_dir):
                for stored in (d / name, d / (name + ".zst"), d / (name + ".lz4")):
                    if stored.exists():
                        stored.unlink()
                        (d / name).touch()
        ref_total, tool_total = sum(ref_times), sum(tool_times)
        ref_med, tool_med = statistics.median(ref_times), statistics.median(tool_times)
        print(f"segments: {args.segments} x 16 MiB per side, alternating; archived already: {args.existing}")
        data = args.payload_from or "random bytes"
        reference = ref_script if args.reference else "built-in"
        print(f"compression: {args.compress}; payload: {data}; reference: {reference}")
        print("| side | segments/s | median ms/segment | p90 ms/segment |")
        print("|---|---|---|---|")
        for label, times, total, med in (
            ("reference (python3 -S, durable copy)", ref_times, ref_total, ref_med),
            ("pgtool archive-wal", tool_times, tool_total, tool_med),
        ):
            p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 2 else times[0]
            print(f"| {label} | {len(times) / total:.1f} | {med * 1000:.1f} | {p90 * 1000:.1f} |")
        total_ratio, median_ratio = tool_total / ref_total, tool_med / ref_med
        print(f"ratio (pgtool / reference): total {total_ratio:.2f}x, median {median_ratio:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
