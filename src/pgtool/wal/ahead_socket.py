"""The uploader's answer to pgtool's archive module (`pgtool_archive`, issue 18).

With `archive_library = 'pgtool_archive'`, the archiver does not start a process per segment: it asks
the uploader running ahead (`pgtool.wal.repo_ahead`) over a Unix socket in `pg_wal/.pgtool-ahead/`
whether its segment is stored, and runs `pgtool_archive.command` (the archive-wal call) only when the
answer is not "ok". The answer is the check every archive-wal call makes, the same function
(`ahead_marks.confirm`): a marker written after the store acknowledged the upload, whose SHA-256 equals
the segment PostgreSQL holds now, for this uploader's repository and key. So "ok" is never early, and
an uploader answers only:
- for the command it was started for (the module sends it; the call that started the uploader had it
  from the module through `ahead_marks.MODULE_COMMAND_ENV`), and only when that command is exactly the
  call that started it (`answerable`): "ok" means that call's repository holds the segment, which says
  nothing of `... && cp %p /elsewhere`, a wrapper script, or a variable the shell expands. A reload to
  another command is not answered from the old one;
- while the key file is still the one it was started with (path, inode, size, mtime): a new key at the
  same path stops it, as a call would stop trusting its markers;
- for a segment name, in its own pg_wal.
One connection at a time (PostgreSQL's archiver is one process); a request is at most MAX_REQUEST bytes.
An upload of the segment in progress is waited for at most CLAIM_WAIT s, below the module's own 30 s
wait for an answer: after that the answer is no, and the module's command waits for the upload itself.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import threading
import time

from pgtool.wal import ahead_marks

SOCKET_NAME = ".sock"  # in ahead_marks.marker_dir; the module connects to pg_wal/.pgtool-ahead/.sock
MAX_REQUEST = 64 * 1024
_READ_TIMEOUT = 10.0  # s for the module to send its request (it sends it at once)
CLAIM_WAIT = 20.0  # s to wait for an upload of the asked segment in progress (the module waits 30 s)
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
        self.key_changed = threading.Event()  # read by the uploader's loop, which then stops
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def path(self) -> str:
        return os.path.join(ahead_marks.marker_dir(self.uploader.pg_wal), SOCKET_NAME)

    def start(self) -> None:
        """Listen (replacing a killed uploader's socket: the caller holds the uploader lock, so no live
        uploader owns it) and answer in a daemon thread."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        directory = os.open(ahead_marks.marker_dir(self.uploader.pg_wal), os.O_RDONLY | os.O_DIRECTORY)
        try:
            # Through the directory's descriptor: sun_path holds 107 bytes, and the data directory's
            # path may not fit (the module connects by a path relative to the data directory).
            sock.bind(f"/proc/self/fd/{directory}/{SOCKET_NAME}")
            os.chmod(self.path, 0o600)
            sock.listen(4)
            sock.settimeout(0.2)
        except OSError:
            sock.close()
            raise
        finally:
            os.close(directory)
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
                except OSError:
                    continue  # the module gave up or sent too much: it runs the command
                except Exception as exc:  # a bug must not silence the socket: the module would wait
                    reply = f"no: {type(exc).__name__}: {exc}"
                finally:
                    self.asked_at = time.monotonic()
                with contextlib.suppress(OSError):  # gone: the module runs the command
                    conn.sendall(reply.encode() + b"\n")
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
            self.key_changed.set()  # a new key at the same path: its calls no longer trust our markers
            return "no: the key file changed"
        found = ahead_marks.confirm(os.path.join(uploader.pg_wal, text), text, uploader.ident, CLAIM_WAIT)
        return "no: not uploaded ahead" if found is None else "ok"


def answerable(command: str, wal_path: str, wal_name: str) -> bool:
    """Whether the module's `command`, expanded as PostgreSQL expands archive_command (%p, %f, %%), is
    exactly this process's command line: one call, no shell syntax around it. Only then may the
    uploader this call starts answer for the whole command (a `&&`, a redirection, a variable, a wrapper
    script or an interpreter other than this one gives other words, and the answer is no)."""
    expanded = []
    i = 0
    while i < len(command):
        pair = command[i : i + 2]
        if pair in ("%p", "%f", "%%"):
            expanded.append({"%p": wal_path, "%f": wal_name, "%%": "%"}[pair])
            i += 2
        else:
            expanded.append(command[i])
            i += 1
    try:
        words = shlex.split("".join(expanded))
    except ValueError:
        return False
    # The console script runs as `<python> <script> archive-wal ...`: its shebang adds the interpreter.
    argv = list(sys.orig_argv)
    return words in (argv, argv[1:])


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
