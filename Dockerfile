# fednode container image: a build stage with the Rust toolchain, and a small
# runtime stage with the binary, a non-root user and a health check.
#
#   docker build -t fednode --build-arg FEDNODE_GIT_SHA=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -p 9090:9090 -v "$PWD/my-configs:/etc/fednode:ro" fednode run /etc/fednode/node.json
#
# docs/operations.md ("Containers") explains the volumes, ports and signals.

# --- build ---------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# No .git in the build context: the commit comes in as a build argument.
ARG FEDNODE_GIT_SHA=unknown
ENV FEDNODE_GIT_SHA=${FEDNODE_GIT_SHA}
# The same lock file CI builds with (scripts/test passes --locked too).
RUN cargo build --release --locked --bin fednode

# --- runtime -------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fednode --create-home fednode
COPY --from=build /src/target/release/fednode /usr/local/bin/fednode
COPY configs /etc/fednode
USER fednode
WORKDIR /var/lib/fednode
# `data_dir` for output stores and timescale spills.
VOLUME ["/var/lib/fednode"]
ENV FEDNODE_ADMIN=0.0.0.0:9090
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/health/ready || exit 1
# SIGTERM drains (docker stop); SIGHUP reloads (docker kill -s HUP).
STOPSIGNAL SIGTERM
ENTRYPOINT ["fednode"]
CMD ["run", "/etc/fednode/demo.json"]
