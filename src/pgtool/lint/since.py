"""`--since GIT_REF`: which migration files changed since a git revision.

Changed means: in `git diff REF...HEAD` (committed on this branch since it left REF), or modified,
staged or untracked in the working tree now (a developer running lint before committing). The
engine still reads the unchanged files, in order, for the facts later files rely on (functions,
validated constraints, partition keys); it reports findings only for the changed ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgtool.errors import UsageError


def _git(args: list[str], cwd: Path) -> tuple[int, str]:
    from pgtool.pg import command

    result = command.run(
        ["git", "-C", str(cwd), *args],
        capture_stdout=True,
        check=False,
        log_stderr_level="debug",
        what="git",
    )
    return result.returncode, result.stdout or ""


def _names(output: str) -> list[str]:
    return [name for name in output.split("\0") if name]


def changed_files(ref: str, cwd: Path | None = None) -> set[str]:
    """Real paths of the files changed since `ref` in the git repository holding `cwd`.

    Raises UsageError (exit 2) when `cwd` is not inside a git work tree or `ref` names no commit.
    """
    here = (cwd or Path.cwd()).resolve()
    code, top = _git(["rev-parse", "--show-toplevel"], here)
    if code != 0 or not top.strip():
        raise UsageError(
            f"--since needs a git repository: {here} is not inside one",
            hint="run pgtool lint from the repository's work tree, or drop --since",
        )
    root = Path(top.strip())
    if ref.startswith("-"):  # never let a ref be read as a git option
        raise UsageError(f"--since: {ref!r} is not a git revision")
    code, _ = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], root)
    if code != 0:
        raise UsageError(
            f"--since: unknown git revision {ref!r}",
            hint="fetch it first (git fetch origin main) or name a commit, branch or tag that exists",
        )
    names: list[str] = []
    for args in (
        ["diff", "--name-only", "-z", "--no-renames", f"{ref}...HEAD", "--"],
        ["diff", "--name-only", "-z", "--no-renames", "HEAD", "--"],  # staged and unstaged
        ["ls-files", "--others", "--exclude-standard", "--full-name", "-z"],  # untracked
    ):
        code, out = _git(args, root)
        if code != 0:
            raise UsageError(f"--since: git {args[0]} failed in {root}", hint="see the log for git's message")
        names.extend(_names(out))
    return {os.path.realpath(root / name) for name in names}


def select(files: list[str], changed: set[str]) -> set[str]:
    """The members of `files` (as given) that are among the `changed` real paths."""
    return {f for f in files if os.path.realpath(f) in changed}
