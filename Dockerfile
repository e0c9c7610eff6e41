# syntax=docker/dockerfile:1
# Multi-stage build of idle_drop_exporter.
#   docker build -t idle_drop_exporter .
# A release build passes its provenance, which `--version`, idle_drop_build_info and the image's
# OCI labels then carry (the build context has no .git, so without them they read "unknown"):
#   docker build \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg BRANCH="$(git rev-parse --abbrev-ref HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE="https://example.org/your/idle_drop_exporter.git" \
#     -t idle_drop_exporter:0.1.0 .
#   docker run -v $PWD/config.yaml:/etc/idle_drop_exporter/config.yaml -p 10187:10187 idle_drop_exporter
#   (to resume measurements across restarts, add -v idle-drop-state:/var/lib/idle_drop_exporter
#   and pass --config.file /etc/idle_drop_exporter/config.yaml --storage.path /var/lib/idle_drop_exporter)

# 1.88: the oldest Rust the locked dependencies build with (sha2 0.11 via postgres-protocol).
FROM rust:1.88-bookworm AS builder
WORKDIR /build
# Dependencies first, against placeholder sources, so this layer is cached until Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY build.rs ./
COPY src ./src
# build.rs takes these under vergen's names (an empty one counts as not given: the build's own
# time, "unknown" for the rest).
ARG REVISION=""
ARG BRANCH=""
ARG CREATED=""
ENV VERGEN_GIT_SHA="${REVISION}" \
    VERGEN_GIT_BRANCH="${BRANCH}" \
    VERGEN_BUILD_TIMESTAMP="${CREATED}"
# touch: make cargo rebuild the crate itself, not trust the placeholder's timestamps.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && mkdir /state

# distroless/cc: glibc and libgcc only (what a Rust binary with rustls needs), no shell, and a
# built-in unprivileged user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
# Keep VERSION equal to Cargo.toml's version (tests/release.rs checks it).
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="idle_drop_exporter" \
      org.opencontainers.image.description="Measures after how long the network path silently drops idle PostgreSQL connections, and exports it to Prometheus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/idle_drop_exporter /usr/local/bin/idle_drop_exporter
COPY config.yaml /etc/idle_drop_exporter/config.yaml
COPY LICENSE /usr/share/doc/idle_drop_exporter/LICENSE
# For --storage.path: owned by the runtime user, so a Docker volume mounted here (which takes
# the image directory's owner) is writable; the image has no shell to mkdir/chown with.
COPY --from=builder --chown=65532:65532 /state /var/lib/idle_drop_exporter
USER 65532:65532
EXPOSE 10187
ENTRYPOINT ["/usr/local/bin/idle_drop_exporter"]
CMD ["--config.file", "/etc/idle_drop_exporter/config.yaml"]
