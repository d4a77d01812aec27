# Stand-in for the official postgres:15-bookworm image where no registry serves it: Debian 12's
# own PostgreSQL 15 (the official image installs the PGDG build of the same major version on
# the same Debian), laid out like the official image and driven by an entrypoint that honours
# the parts of its contract the compose file uses. Differences: docs/compose-and-deploy.md.
FROM debian:12.12-slim

ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca

# The official image's user (uid/gid 999) and locale (en_US.UTF-8: initdb's encoding UTF8).
RUN groupadd -r postgres --gid=999 \
    && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \
    && mkdir -p /var/lib/postgresql && chown -R postgres:postgres /var/lib/postgresql
# (slim excludes /usr/share/locale: lift that for locales' alias file, as the official image does)
RUN sed -ri '/\/usr\/share\/locale/d' /etc/dpkg/dpkg.cfg.d/docker \
    && apt-get update \
    && apt-get install -y --no-install-recommends locales \
    && localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8 \
    && apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/15/postgresql.conf.sample \
    && rm -rf /var/lib/apt/lists/*
ENV LANG=en_US.utf8 \
    PG_MAJOR=15 \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
RUN mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql "$PGDATA" \
    && chown postgres:postgres /var/run/postgresql "$PGDATA" \
    && chmod 3777 /var/run/postgresql && chmod 1777 "$PGDATA"
VOLUME /var/lib/postgresql/data

COPY docker/standins/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
LABEL org.audio-pipeline.standin="debian-postgresql-15"
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
