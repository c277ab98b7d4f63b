# allot in a container: a release build, then a small Debian runtime with the one binary,
# run as an unprivileged user, its data directory a volume.
#
#   docker build -t allot .
#   docker run -p 8080:8080 -v allot-data:/var/lib/allot allot
#
# Checked without a Docker engine by `bash deploy/check.sh` (hadolint), which cargo test runs.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole workspace: engine, server, cli, benches, the patched sled under vendor/.
COPY . .
RUN cargo build --release --locked -p allot \
    && install -m 0755 target/release/allot /usr/local/bin/allot

FROM debian:bookworm-slim
# No packages beyond the base: the binary is self-contained (rustls, no OpenSSL), and the
# health check is the binary itself.
RUN groupadd --system --gid 10001 allot \
    && useradd --system --uid 10001 --gid allot --home-dir /var/lib/allot --shell /usr/sbin/nologin allot \
    && mkdir -p /var/lib/allot \
    && chown allot:allot /var/lib/allot
COPY --from=build /usr/local/bin/allot /usr/local/bin/allot
USER 10001:10001
WORKDIR /var/lib/allot
ENV ALLOT_LISTEN=0.0.0.0:8080 \
    ALLOT_DATA_DIR=/var/lib/allot/db \
    ALLOT_BACKUP_DIR=/var/lib/allot/backups \
    ALLOT_LOG_FORMAT=json
VOLUME ["/var/lib/allot"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["allot", "ready", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["allot"]
CMD ["serve"]
