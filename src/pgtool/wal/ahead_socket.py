"""The uploader's answer to pgtool's archive module (`pgtool_archive`, issue 18).

With `archive_library = 'pgtool_archive'`, the archiver does not start a process per segment: it asks
the uploader running ahead (`pgtool.wal.repo_ahead`) over a Unix socket in `pg_wal/.pgtool-ahead/`
whether its segment is stored, and runs `pgtool_archive.command` (the archive-wal call) only when the
answer is not "ok". The answer is the check every archive-wal call makes, the same function
(`ahead_marks.confirm`): a marker written after the store acknowledged the upload, whose SHA-256 equals
the segment PostgreSQL holds now, for this uploader's repository and key. So "ok" is never early, and
an uploader answers only:
- for the command it was started for (the module sends it; the call that started the uploader had it
  from the module through `ahead_marks.MODULE_COMMAND_ENV`): a reload to another command is not answered
  from the old one;
- while the key file is still the one it was started with (path, inode, size, mtime): a new key at the
  same path stops it, as a call would stop trusting its markers;
- for a segment name, in its own pg_wal.
One connection at a time (PostgreSQL's archiver is one process); a request is at most MAX_REQUEST bytes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from pgtool.wal import ahead_marks

SOCKET_NAME = ".sock"  # in ahead_marks.marker_dir; the module connects to pg_wal/.pgtool-ahead/.sock
MAX_REQUEST = 64 * 1024
_READ_TIMEOUT = 10.0  # s for the module to send its request (it sends it at once)
HEX = frozenset("0123456789ABCDEF")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgtool.wal.repo_ahead import Uploader


class Answerer:
    """The socket and the thread that answers on it, for the life of one uploader."""

    def __init__(self, uploader: Uploader, command: str, url: str, key_file: str | None) -> None:
        self.uploader = uploader
        self.command = command
        self.url = url
        self.key_file = key_file
        self.confirmed = 0  # segments answered "ok"
        self.refused = 0  # requests answered with anything else
        self.asked_at = 0.0  # time.monotonic() of the last request: the uploader is not idle meanwhile
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def path(self) -> str:
        return os.path.join(ahead_marks.marker_dir(self.uploader.pg_wal), SOCKET_NAME)

    def start(self) -> None:
        """Listen (replacing a killed uploader's socket: the caller holds the uploader lock, so no live
        uploader owns it) and answer in a daemon thread. Call before other threads start: it binds from
        inside the marker directory (sun_path holds 107 bytes; the data directory's path may not fit)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.chdir(ahead_marks.marker_dir(self.uploader.pg_wal))
            try:
                sock.bind(SOCKET_NAME)
            finally:
                os.chdir("/")
            os.chmod(self.path, 0o600)
            sock.listen(4)
            sock.settimeout(0.2)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="pgtool-ahead-answer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering; the module's next request finds no socket and runs the command."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.asked_at = time.monotonic()
                try:
                    conn.settimeout(_READ_TIMEOUT)
                    reply = self.answer(_read_request(conn))
                    conn.sendall(reply.encode() + b"\n")
                except OSError:
                    continue  # the archiver gave up on us: it runs the command
                finally:
                    self.asked_at = time.monotonic()
                if reply == "ok":
                    self.confirmed += 1
                else:
                    self.refused += 1

    def answer(self, request: bytes) -> str:
        """ "ok" when the segment the request names is stored (see the module docstring), else "no ..."."""
        command, sep, rest = request.partition(b"\0")
        name, sep2, tail = rest.partition(b"\0")
        if not sep or not sep2 or tail:
            return "no: malformed request"
        if command.decode("utf-8", "replace") != self.command:
            return "no: this uploader runs for another pgtool_archive.command"
        text = name.decode("ascii", "replace")
        if len(text) != 24 or not HEX.issuperset(text):
            return "no: not a WAL segment name"
        uploader = self.uploader
        if ahead_marks.identity(self.url, self.key_file) != uploader.ident:
            uploader.replaced = True  # a new key at the same path: its calls no longer trust our markers
            return "no: the key file changed"
        found = ahead_marks.confirm(os.path.join(uploader.pg_wal, text), text, uploader.ident)
        return "no: not uploaded ahead" if found is None else "ok"


def _read_request(conn: socket.socket) -> bytes:
    """The request, up to the module's end of writing; OSError if it is too long or never ends."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise OSError("request too long")
        chunks.append(chunk)
