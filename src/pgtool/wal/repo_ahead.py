"""Archiving ahead (`archive-wal --ahead N`, issue 18): an uploader that keeps a remote repository up
with a busy primary. PostgreSQL calls archive_command serially, one process per segment; against an
object store each call would pay a process start, the repository client's import and several round
trips. So an archive-wal call that finds more segments ready starts ONE uploader for the pg_wal (a
detached process; `ensure_uploader`), which uploads the ready segments N at a time over one connection
pool and leaves a marker for each the store acknowledged (`pgtool.wal.ahead_marks`). The calls that
follow then only read their segment, hash it and compare it with its marker: no import of the
repository client, no round trip (`pgtool.wal.fastcli`).

What holds:
- Never early. A call exits 0 only for its own upload acknowledged by the store, or for a marker
  written after the store acknowledged exactly the bytes PostgreSQL hands over now.
- Never tamper or drop. PostgreSQL's `archive_status/*.ready` files are only read, never renamed or
  deleted; a segment the uploader cannot check or upload is just left: its own call does the full
  path (checks, conditional create) and reports the problem, and PostgreSQL keeps the segment.
- Bounded. At most N uploads in flight (and at most MAX_AHEAD_BYTES of segments in memory), one
  uploader per pg_wal, no local copy of any segment. It stops at its first failed upload (the calls
  then fail on their own and PostgreSQL retries: the backlog grows in pg_wal, visible in
  pg_stat_archiver and `pgtool status`), after IDLE_EXIT s without work, once the server is gone, as
  soon as the calls archive into another repository or with another key (`ahead_marks.want`), and
  after MAX_LIFETIME (the next call starts a fresh one, with fresh credentials and settings). It runs
  at most AHEAD_WINDOW * N segments ahead of the oldest ready one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time

from pgtool.repo import RepoError
from pgtool.wal import ahead_marks
from pgtool.wal.archive import CorruptArchiveError
from pgtool.wal.archiving import check_segment_fd, refuse_past_fork
from pgtool.wal.errors import WalCommandError
from pgtool.wal.names import SEGMENT, parse_wal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from pgtool.wal.ahead_socket import Answerer
    from pgtool.wal.repo_archive import RepoWal

MAX_AHEAD_BYTES = 256 * 1024 * 1024
AHEAD_WINDOW = 4  # how far ahead of the oldest ready segment, in multiples of the parallelism
IDLE_EXIT = 3.0  # s without a segment to upload before the uploader exits
MAX_LIFETIME = 900.0
FORK_REFRESH = 1.0  # s between reads of the split-brain history object
_POLL = 0.02
IDENTITY_ENV = "PGTOOL_AHEAD_IDENTITY"  # the calls' `ahead_marks.identity`, handed to the uploader


def followers(
    pg_wal: str, timeline: int, seg_size: int, limit: int, skip: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Up to `limit` segments of `timeline` that PostgreSQL marked ready, no marker covers and `skip`
    does not name, oldest first, among the oldest AHEAD_WINDOW * `limit` ready ones: the uploader runs
    only a bounded way ahead of PostgreSQL's calls, so its markers are consumed within seconds."""
    try:
        entries = os.listdir(os.path.join(pg_wal, "archive_status"))
    except OSError:
        return []  # pg_wal gone (the cluster was removed) or unreadable: nothing to upload
    try:
        marked = set(os.listdir(ahead_marks.marker_dir(pg_wal)))
    except OSError:
        marked = set()
    ready = []
    for entry in entries:
        if not entry.endswith(".ready"):
            continue
        try:
            other = parse_wal_name(entry[: -len(".ready")])
        except ValueError:
            continue
        if other.kind == SEGMENT and other.timeline == timeline:
            ready.append((other.segno(seg_size), other.name))
    window = sorted(ready)[: AHEAD_WINDOW * limit]
    return [name for _segno, name in window if name not in marked and name not in skip][:limit]


def parallelism(ahead: int, seg_size: int) -> int:
    return max(0, min(ahead, MAX_AHEAD_BYTES // seg_size))


def ensure_uploader(
    wal_path: str,
    own: str,
    url: str,
    key_file: str | None,
    *,
    sysid: int,
    seg_size: int,
    timeline: int,
    ahead: int,
    compress: bool,
) -> bool:
    """Start the uploader for `pg_wal` unless one runs or nothing waits; True if one was started.

    The caller has checked the repository's system identifier against `sysid`; the uploader checks
    every segment against it (and the split-brain fork) before uploading it.
    """
    parallel = parallelism(ahead, seg_size)
    if parallel == 0:
        return False
    pg_wal = ahead_marks.pg_wal_of(wal_path)
    # Resolved here, in PostgreSQL's working directory (the data directory): the uploader runs in /.
    ident = ahead_marks.identity(url, key_file)
    # An uploader for another repository or key (archive_command reloaded) sees this and stops.
    ahead_marks.want(pg_wal, ident)
    if ahead_marks.uploader_running(pg_wal):
        return False
    if not [n for n in followers(pg_wal, timeline, seg_size, 2) if n != own]:
        return False  # only the caller's own segment is ready: nothing to run ahead of
    from pgtool.pg.detached import start_detached

    if not url.startswith(("s3://", "azure://")):
        url = os.path.abspath(url[len("file://") :] if url.startswith("file://") else url)
    argv = [sys.executable, "-m", "pgtool.wal.repo_ahead", pg_wal, url]
    argv += [str(sysid), str(seg_size), str(timeline), str(parallel), "1" if compress else "0"]
    # The same modules as this process (a venv, or the WAL bundle and the packages beside it).
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), IDENTITY_ENV: ident}
    # pgtool's archive module ran this call: the uploader may answer it, but only when the module's
    # command is exactly this call (ahead_socket.answerable); else it answers nothing, and the module
    # runs its whole command for every segment.
    module_command = os.environ.get(ahead_marks.MODULE_COMMAND_ENV, "")
    if module_command:
        from pgtool.wal.ahead_socket import answerable

        exact = answerable(module_command, wal_path, own)
        env[ahead_marks.MODULE_COMMAND_ENV] = module_command if exact else ""
    if key_file:
        env["PGTOOL_REPO_KEY_FILE"] = os.path.abspath(key_file)
    start_detached(argv, env=env)
    return True


class Uploader:
    """One run of the uploader (see the module docstring)."""

    def __init__(self, archive: RepoWal, pg_wal: str, ident: str, sysid: int, seg_size: int) -> None:
        self.archive = archive
        self.pg_wal = pg_wal
        self.ident = ident
        self.sysid = sysid
        self.seg_size = seg_size
        self.uploaded = 0  # objects created
        self.already = 0  # objects that were there already, identical (their own call stored them)
        self.replaced = False  # the calls now archive into another repository
        self.problem: str | None = None  # an upload failed: stop
        self.skipped: dict[str, str] = {}  # segments that failed a check: left to their own calls
        # uploaded by this run (its marker may be consumed already) or archived by its own call
        self.handled: set[str] = set()
        self._fork: tuple[int, int] | None = None
        self._fork_read = 0.0
        self.answerer: Answerer | None = None  # answers pgtool's archive module, when it started us

    def fork(self, timeline: int) -> tuple[int, int] | None:
        if time.monotonic() - self._fork_read >= FORK_REFRESH:
            self._fork = self.archive.fork_point(timeline)
            self._fork_read = time.monotonic()
        return self._fork

    def server_gone(self) -> bool:
        return not os.path.exists(os.path.join(os.path.dirname(self.pg_wal), "postmaster.pid"))

    def run(self, timeline: int, parallel: int, compress: bool) -> None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        started = idle_since = time.monotonic()
        inflight: dict[Future[tuple[bool, str]], tuple[str, int]] = {}
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="pgtool-ahead") as pool:
            while True:
                now = time.monotonic()
                if self.answerer is not None:  # being asked by the archive module is not idleness
                    idle_since = max(idle_since, self.answerer.asked_at)
                self.replaced = (
                    self.replaced
                    or ahead_marks.wanted(self.pg_wal) not in (None, self.ident)
                    or (self.answerer is not None and self.answerer.key_changed.is_set())
                )
                stopping = (
                    self.problem is not None
                    or self.replaced
                    or now - started > MAX_LIFETIME
                    or now - idle_since > IDLE_EXIT
                    or self.server_gone()
                )
                if not stopping and len(inflight) < parallel:
                    busy = self.handled | self.skipped.keys() | {n for n, _c in inflight.values()}
                    for name in followers(self.pg_wal, timeline, self.seg_size, parallel, busy):
                        if len(inflight) >= parallel:
                            break
                        job = self._start(pool, name, timeline, compress)
                        if job is not None:
                            inflight[job[0]] = job[1]
                if inflight:
                    idle_since = time.monotonic()
                elif stopping:
                    return
                else:
                    time.sleep(_POLL)
                    continue
                done, _ = wait(list(inflight), timeout=_POLL, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(future, *inflight.pop(future))

    def _start(
        self, pool: ThreadPoolExecutor, name: str, timeline: int, compress: bool
    ) -> tuple[Future[tuple[bool, str]], tuple[str, int]] | None:
        claim = ahead_marks.try_claim(self.pg_wal, name)
        if claim is None:
            # Its own call is archiving it and will see to it, failed or not (PostgreSQL retries a
            # failure with a new call): uploading it after that call ends would only duplicate it.
            self.handled.add(name)
            return None
        try:
            data = self._checked(name, timeline)
        except FileNotFoundError:
            ahead_marks.release(claim)
            self.handled.add(name)  # archived by its own call and recycled meanwhile
            return None
        except (WalCommandError, CorruptArchiveError, OSError, RepoError) as exc:
            ahead_marks.release(claim)
            self.skipped[name] = str(exc)
            return None
        return pool.submit(self._upload, name, data, compress), (name, claim)

    def _upload(self, name: str, data: bytes, compress: bool) -> tuple[bool, str]:
        """In a pool thread, so that this loop keeps starting uploads while others wait on the store:
        (created, SHA-256 of `data`) once the store acknowledged `name` and, read after that, the
        split-brain history still allows it."""
        from pgtool.repo import layout as repo_layout

        digest = hashlib.sha256(data).hexdigest()  # hashlib and the store client release the GIL
        created = self.archive.repo.put_if_absent(repo_layout.wal_name(name), data, compress=compress)
        # Split brain: timeline+1 may have appeared while this upload ran. Read again, now: a segment
        # past its fork gets no marker (its own call refuses it).
        wal = parse_wal_name(name)
        refuse_past_fork(wal, self.seg_size, self.archive.fork_point(wal.timeline), self.archive.display)
        return created, digest

    def _checked(self, name: str, timeline: int) -> bytes:
        """The segment's bytes, after archive-wal's own checks (header, system, size, split brain)."""
        wal = parse_wal_name(name)
        path = os.path.join(self.pg_wal, name)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            their_sysid, their_size = check_segment_fd(f.fileno(), size, path, name, wal)
            if their_sysid != self.sysid or their_size != self.seg_size:
                raise CorruptArchiveError(f"{path} is not of the same database system or segment size")
            refuse_past_fork(wal, self.seg_size, self.fork(timeline), self.archive.display)
            return f.read()

    def _finish(self, future: Future[tuple[bool, str]], name: str, claim: int) -> None:
        from pgtool.repo import layout as repo_layout

        try:
            try:
                created, digest = future.result()
            except (RepoError, OSError) as exc:
                self.problem = self.problem or f"{name}: {exc}"
                return
            except (WalCommandError, CorruptArchiveError) as exc:
                self.skipped[name] = str(exc)
                return
            # The store acknowledged the object: now, and only now, the marker may say so.
            where = self.archive.where(repo_layout.wal_name(name))
            try:
                ahead_marks.write_marker(self.pg_wal, name, digest, self.ident, where)
                if created:
                    self.uploaded += 1
                else:
                    self.already += 1
                self.handled.add(name)
            except OSError as exc:
                self.problem = self.problem or f"{name}: marker not written: {exc.strerror or exc}"
        finally:
            ahead_marks.release(claim)


def main(argv: list[str]) -> int:
    """The detached uploader: `python -m pgtool.wal.repo_ahead PG_WAL URL SYSID SEG_SIZE TLI N COMPRESS`.

    Logs one summary line on stderr (the server log) when it ends.
    """
    from pgtool.wal import logline

    start = time.monotonic()
    pg_wal, url = argv[0], argv[1]
    sysid, seg_size, timeline, parallel, compress = (int(a) for a in argv[2:7])
    with contextlib.suppress(OSError):
        os.mkdir(ahead_marks.marker_dir(pg_wal), 0o700)  # never pg_wal itself: gone means stop
    lock = ahead_marks.try_lock(os.path.join(ahead_marks.marker_dir(pg_wal), ahead_marks.UPLOADER_LOCK))
    if lock is None:
        return 0  # another uploader won the race to start
    fields: dict[str, object] = {"command": "archive-wal", "role": "uploader ahead", "repo": url}
    uploader = None
    try:
        from pgtool.wal.repo_archive import open_wal

        key_file = os.environ.get("PGTOOL_REPO_KEY_FILE") or None
        ident = os.environ.get(IDENTITY_ENV) or ahead_marks.identity(url, key_file)
        uploader = Uploader(open_wal(url, key_file, create=False), pg_wal, ident, sysid, seg_size)
        module_command = os.environ.get(ahead_marks.MODULE_COMMAND_ENV)
        if module_command:  # started by a call of pgtool's archive module: answer it (ahead_socket)
            from pgtool.wal.ahead_socket import Answerer

            uploader.answerer = Answerer(uploader, module_command, url, key_file)
            uploader.answerer.start()
        uploader.run(timeline, parallel, bool(compress))
        problem = uploader.problem
        skipped = uploader.skipped
    except Exception as exc:  # never a traceback in the server log: one line, the calls carry on alone
        problem, skipped = f"{type(exc).__name__}: {exc}", {}
    finally:
        if uploader is not None and uploader.answerer is not None:
            uploader.answerer.stop()  # before the lock goes: the next uploader binds the socket again
        os.close(lock)
    with contextlib.suppress(Exception):
        ahead_marks.forget_stale(pg_wal)
    fields["uploaded"] = uploader.uploaded if uploader else 0
    if uploader and uploader.answerer:
        fields["confirmed_for_module"] = uploader.answerer.confirmed
        fields["not_confirmed_for_module"] = uploader.answerer.refused
    if uploader and uploader.already:
        fields["already_stored"] = uploader.already
    if uploader and uploader.replaced:
        fields["stopped"] = "archive_command now archives into another repository or with another key"
    level = "info" if problem is None and not skipped else "warning"
    if problem is not None:
        fields["warning"] = f"stopped uploading ahead: {problem}; each segment's own call uploads it"
    elif skipped:
        name, why = next(iter(skipped.items()))
        fields["skipped"] = len(skipped)
        fields["warning"] = f"left {len(skipped)} segment(s) to their own calls, first {name}: {why}"
    fields["duration_s"] = round(time.monotonic() - start, 3)
    if logline.LEVELS[level] >= logline.LEVELS[logline.level_from_env()]:
        as_json = logline.wants_json(sys.stderr)
        logline.write(logline.render("uploader finished", level, fields, as_json=as_json))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
