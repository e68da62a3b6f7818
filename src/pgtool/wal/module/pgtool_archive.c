/*
 * pgtool_archive: PostgreSQL archive module (archive_library) for `pgtool archive-wal --repo`.
 *
 * Why it exists (issue 18): with archive_command, PostgreSQL starts a shell and a Python interpreter
 * for every 16 MiB segment, about 34 ms before pgtool runs a line, one segment after another. With a
 * remote repository, the uploader running ahead (pgtool.wal.repo_ahead) has usually stored the segment
 * already, so that start-up is most of what the call costs. This module runs inside the archiver and
 * asks the uploader over a Unix socket instead; only when the uploader does not answer "ok" does it run
 * pgtool_archive.command, exactly as archive_command would have run.
 *
 * What it decides: nothing. "ok" comes from the uploader's `pgtool.wal.ahead_socket`, which answers
 * with the same check every archive-wal call makes (`ahead_marks.confirm`: a marker written after the
 * store acknowledged the upload, whose SHA-256 equals the segment PostgreSQL holds now, for the
 * repository and key the command names), and only when the command is exactly one archive-wal call
 * (`ahead_socket.answerable`: a chained command, say `... && cp %p elsewhere`, is never answered).
 * Anything else (no uploader, another command, a timeout, a malformed reply) runs the command. So this file holds no policy and no cryptography; it is the
 * transport of a yes, and PostgreSQL's shell_archive when the answer is not yes.
 *
 * Settings (postgresql.conf, reload to change):
 *   archive_library = 'pgtool_archive'          (or its absolute path; see `pgtool archive-module`)
 *   pgtool_archive.command = 'pgtool archive-wal %p %f --repo s3://bucket/prefix'
 *
 * Builds against PostgreSQL 15 (archive modules' first API) and 16 or later (the API with state).
 */
#include "postgres.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM >= 160000
#include "archive/archive_module.h"
#else
#include "postmaster/pgarch.h"
#endif

PG_MODULE_MAGIC;

/* Relative to the data directory, the archiver's working directory: sun_path holds 107 bytes. */
#define UPLOADER_SOCKET "pg_wal/.pgtool-ahead/.sock"
/* The command reaches the uploader through the environment of the calls that start it. */
#define COMMAND_ENV "PGTOOL_ARCHIVE_MODULE_COMMAND"
/* How long the request may take to go out: the uploader accepts at once when it runs at all. */
#define CONNECT_TIMEOUT_S 2
/*
 * How long to wait for the answer. The uploader may be finishing an upload of this very segment; it
 * waits for that at most pgtool.wal.ahead_socket.CLAIM_WAIT (20 s) and then says no, so this is only
 * reached when it is frozen; the command then runs (and waits for the upload itself, if one holds it).
 */
#define ANSWER_TIMEOUT_S 30

static char *archive_command_text = NULL;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("pgtool_archive.command",
							   "The archive-wal command run for a segment the uploader did not store.",
							   "Like archive_command: %p is the path of the file, %f its name, %% a percent sign.",
							   &archive_command_text,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgtool_archive");
}

static bool
is_configured(void)
{
	return archive_command_text != NULL && archive_command_text[0] != '\0';
}

typedef enum Answer
{
	STORED,						/* the uploader confirmed the segment */
	NOT_STORED,					/* anything else: run the command */
	STOPPING					/* the postmaster died or the archiver is told to stop: run nothing */
} Answer;

static bool
stopping(void)
{
	return ShutdownRequestPending || !PostmasterIsAlive();
}

/* Milliseconds left until `deadline` (CLOCK_MONOTONIC), at most 1000: waits stay responsive. */
static int
slice_ms(const struct timespec *deadline)
{
	struct timespec now;
	long		left;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left = (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
	return left <= 0 ? 0 : (int) Min(left, 1000L);
}

/*
 * Wait until fd is ready for `events`, the deadline passes (false) or the archiver must stop (false,
 * with *stop set). Retries EINTR: PostgreSQL's handlers restart system calls.
 */
static bool
wait_for(int fd, short events, const struct timespec *deadline, bool *stop)
{
	for (;;)
	{
		struct pollfd pfd = {.fd = fd,.events = events};
		int			ms = slice_ms(deadline);
		int			ready;

		if (stopping())
		{
			*stop = true;
			return false;
		}
		if (ms == 0)
			return false;
		ready = poll(&pfd, 1, ms);
		if (ready > 0)
			return true;
		if (ready < 0 && errno != EINTR)
			return false;
	}
}

static void
deadline_in(struct timespec *deadline, int seconds)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += seconds;
}

/*
 * Ask the uploader whether `file` is stored: STORED only for the exact answer "ok\n". The request is
 * the command, a NUL, the file name and a NUL; the uploader compares the command with the one it was
 * started for, so a reload to another command is never answered from the old one. The socket is
 * non-blocking throughout: a frozen uploader, or one whose listen queue is full, costs at most
 * CONNECT_TIMEOUT_S + ANSWER_TIMEOUT_S, after which the command runs.
 */
static Answer
ask_uploader(const char *file)
{
	struct sockaddr_un addr;
	struct timespec deadline;
	StringInfoData request;
	char		reply[64];
	size_t		got = 0;
	size_t		sent = 0;
	bool		stop = false;
	int			fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return NOT_STORED;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strlcpy(addr.sun_path, UPLOADER_SOCKET, sizeof(addr.sun_path));
	if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		/*
		 * No uploader (ENOENT), one that died (ECONNREFUSED), or one not accepting (EAGAIN: a
		 * non-blocking Unix socket does not wait for room in the listen queue). The usual case when
		 * nothing runs ahead: not worth a line.
		 */
		close(fd);
		return NOT_STORED;
	}
	initStringInfo(&request);
	appendBinaryStringInfo(&request, archive_command_text, strlen(archive_command_text) + 1);
	appendBinaryStringInfo(&request, file, strlen(file) + 1);
	deadline_in(&deadline, CONNECT_TIMEOUT_S);
	while (sent < (size_t) request.len)
	{
		ssize_t		n = send(fd, request.data + sent, request.len - sent, MSG_NOSIGNAL);

		if (n > 0)
			sent += (size_t) n;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			break;
		else if (!wait_for(fd, POLLOUT, &deadline, &stop))
			break;
	}
	pfree(request.data);
	if (sent == (size_t) request.len && shutdown(fd, SHUT_WR) == 0)
	{
		deadline_in(&deadline, ANSWER_TIMEOUT_S);
		pgstat_report_wait_start(WAIT_EVENT_ARCHIVE_COMMAND);
		while (got < sizeof(reply))
		{
			ssize_t		n = recv(fd, reply + got, sizeof(reply) - got, 0);

			if (n > 0)
				got += (size_t) n;
			else if (n == 0)
				break;			/* the uploader's answer is complete */
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				break;
			else if (!wait_for(fd, POLLIN, &deadline, &stop))
				break;
		}
		pgstat_report_wait_end();
	}
	close(fd);
	if (stop)
		return STOPPING;
	if (got == 3 && memcmp(reply, "ok\n", 3) == 0)
		return STORED;
	ereport(DEBUG1,
			(errmsg_internal("pgtool_archive: the uploader did not confirm \"%s\" (%.*s); running the command",
							 file, (int) got, got ? reply : "no answer")));
	return NOT_STORED;
}

/* The command with %p, %f and %% replaced as archive_command's are. */
static char *
expand_command(const char *file, const char *path)
{
	StringInfoData buf;
	const char *sp;

	initStringInfo(&buf);
	for (sp = archive_command_text; *sp; sp++)
	{
		if (sp[0] != '%' || (sp[1] != 'p' && sp[1] != 'f' && sp[1] != '%'))
		{
			appendStringInfoChar(&buf, *sp);	/* as PostgreSQL: any other % is itself */
			continue;
		}
		sp++;
		if (*sp == 'p')
			appendStringInfoString(&buf, path);
		else if (*sp == 'f')
			appendStringInfoString(&buf, file);
		else
			appendStringInfoChar(&buf, '%');
	}
	return buf.data;
}

/* Run the command as shell_archive runs archive_command, with its messages and its FATAL on a signal. */
static bool
run_command(const char *file, const char *path)
{
	char	   *command = expand_command(file, path);
	int			rc;

	/* Tell the call (and the uploader it may start) which command the module runs: see ask_uploader. */
	if (setenv(COMMAND_ENV, archive_command_text, 1) != 0)
		ereport(ERROR, (errmsg("could not set %s: %m", COMMAND_ENV)));
	ereport(DEBUG3, (errmsg_internal("executing archive command \"%s\"", command)));
	fflush(NULL);
	pgstat_report_wait_start(WAIT_EVENT_ARCHIVE_COMMAND);
	rc = system(command);
	pgstat_report_wait_end();
	if (rc != 0)
	{
		int			level = wait_result_is_any_signal(rc, true) ? FATAL : LOG;

		if (WIFEXITED(rc))
			ereport(level,
					(errmsg("archive command failed with exit code %d", WEXITSTATUS(rc)),
					 errdetail("The failed archive command was: %s", command)));
		else if (WIFSIGNALED(rc))
			ereport(level,
					(errmsg("archive command was terminated by signal %d: %s",
							WTERMSIG(rc), pg_strsignal(WTERMSIG(rc))),
					 errdetail("The failed archive command was: %s", command)));
		else
			ereport(level,
					(errmsg("archive command exited with unrecognized status %d", rc),
					 errdetail("The failed archive command was: %s", command)));
		pfree(command);
		return false;
	}
	pfree(command);
	return true;
}

static bool
archive_one(const char *file, const char *path)
{
	switch (ask_uploader(file))
	{
		case STORED:
			ereport(DEBUG1, (errmsg_internal("pgtool_archive: \"%s\" confirmed by the uploader", file)));
			return true;
		case STOPPING:
			/* As PostgreSQL's own loop: no new command once the archiver must stop. */
			return false;
		case NOT_STORED:
			break;
	}
	return run_command(file, path);
}

#if PG_VERSION_NUM >= 160000

static bool
check_configured(ArchiveModuleState *state)
{
#if PG_VERSION_NUM >= 170000
	if (!is_configured())
		arch_module_check_errdetail("pgtool_archive.command is not set.");
#endif
	return is_configured();
}

static bool
archive_file(ArchiveModuleState *state, const char *file, const char *path)
{
	return archive_one(file, path);
}

static const ArchiveModuleCallbacks callbacks = {
	.startup_cb = NULL,
	.check_configured_cb = check_configured,
	.archive_file_cb = archive_file,
	.shutdown_cb = NULL,
};

const ArchiveModuleCallbacks *
_PG_archive_module_init(void)
{
	return &callbacks;
}

#else							/* PostgreSQL 15 */

static bool
check_configured(void)
{
	return is_configured();
}

static bool
archive_file(const char *file, const char *path)
{
	return archive_one(file, path);
}

void
_PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
	cb->check_configured_cb = check_configured;
	cb->archive_file_cb = archive_file;
	cb->shutdown_cb = NULL;
}

#endif
