"""A migration file's text and the offset arithmetic around it.

libpg_query reports statement positions in UTF-8 bytes; pglast's scanner and its ParseError report
character offsets. Everything downstream works in character offsets; `char_offset` converts, and
`line_col` turns a character offset into the 1-based line and column (in characters) users see.
"""

from __future__ import annotations

from bisect import bisect_right


class Source:
    """One file's text, with lazily built byte/char and line tables."""

    __slots__ = ("_ascii", "_bytes", "_last", "_line_starts", "path", "text")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._ascii = text.isascii()
        self._bytes: bytes | None = None
        self._line_starts: list[int] | None = None
        self._last = (0, 0)  # (byte offset, char offset) of the previous conversion

    def char_offset(self, byte_offset: int) -> int:
        """Character offset of a UTF-8 byte offset into the text."""
        if self._ascii:
            return byte_offset
        if self._bytes is None:
            self._bytes = self.text.encode("utf-8")
        # Statements come in order: decode only the bytes since the previous offset, so a large
        # non-ASCII file costs linear time, not quadratic. Parser offsets sit on character boundaries.
        last_byte, last_char = self._last if byte_offset >= self._last[0] else (0, 0)
        char = last_char + len(self._bytes[last_byte:byte_offset].decode("utf-8", errors="ignore"))
        self._last = (byte_offset, char)
        return char

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        if self._line_starts is None:
            starts = [0]
            text = self.text
            pos = text.find("\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = text.find("\n", pos + 1)
            self._line_starts = starts
        index = bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def line(self, offset: int) -> int:
        return self.line_col(offset)[0]


def first_token(text: str, start: int, end: int) -> int:
    """Offset of the first token in text[start:end], past whitespace and comments.

    Comments are found with PostgreSQL's own scanner (pglast), not by pattern matching, so a `--`
    inside a string literal can never be mistaken for one.
    """
    pos = start
    while pos < end and text[pos].isspace():
        pos += 1
    if not (text.startswith("--", pos) or text.startswith("/*", pos)):
        return pos
    from pglast.parser import scan

    try:
        tokens = scan(text[pos:end])
    except Exception:  # an unterminated comment: point at the comment itself
        return pos
    for token in tokens:
        if token.name not in ("SQL_COMMENT", "C_COMMENT"):
            return pos + token.start
    return pos
