# pgtool: one image for every CronJob and Job (see manifests/). ENTRYPOINT is the pgtool CLI.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir build==1.2.2 && python -m build --wheel --outdir /dist

FROM python:3.12-slim-bookworm
# PostgreSQL binaries for every supported server major, from the PostgreSQL project's apt repository:
# the clients (pg_dump must not be older than the server) and the servers, since `pgtool verify`
# restores dumps into a throwaway cluster of its own, initdb'd with the dumps' major.
# The CronJobs run as uid 999 (the server pods' uid); initdb and postgres need a passwd entry for the
# user they run as, so the postgres user the server packages would create gets uid/gid 999 first.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 postgresql-client-18 \
      postgresql-15 postgresql-18 zstd lz4 \
 && apt-get purge -y curl gnupg && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin pgtool
ENV PGTOOL_PG_BINDIR=/usr/lib/postgresql/18/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
ENTRYPOINT ["pgtool"]
CMD ["--help"]
