"""`pgtool check` (issue 18): prove that WAL archiving works end to end, and that the setup around it
is right. Never imports typer; the CLI is `pgtool.cli.check`.

    run_check(CheckRequest(...), report) -> CheckResult

The checks, each one line (ok / warning / problem, a problem naming its fix):
  repository   the repository (or archive directory) is reachable, its record readable, the key right,
               and writing permitted (a probe object written, read back verified, deleted);
  server       archive_mode, wal_level, archive_command (calls pgtool archive-wal with this archive),
               archive_library, archive_timeout (the RPO bound on a quiet server);
  system id    the archive belongs to this server (pg_control_system());
  end-to-end   a restore point, pg_switch_wal(), and the switched segment found in the archive and read
               back verified, timed; pg_stat_archiver's failures quoted when it does not arrive.
"""

from pgtool.wal_check.model import CheckResult, Finding
from pgtool.wal_check.run import CheckRequest, run_check

__all__ = ["CheckRequest", "CheckResult", "Finding", "run_check"]
