# syntax=docker/dockerfile:1
# Multi-stage build of idle_drop_exporter.
#   docker build -t idle_drop_exporter .
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
COPY src ./src
# touch: make cargo rebuild the crate itself, not trust the placeholder's timestamps.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && mkdir /state

# distroless/cc: glibc and libgcc only (what a Rust binary with rustls needs), no shell, and a
# built-in unprivileged user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /build/target/release/idle_drop_exporter /usr/local/bin/idle_drop_exporter
COPY config.yaml /etc/idle_drop_exporter/config.yaml
# For --storage.path: owned by the runtime user, so a Docker volume mounted here (which takes
# the image directory's owner) is writable; the image has no shell to mkdir/chown with.
COPY --from=builder --chown=65532:65532 /state /var/lib/idle_drop_exporter
USER 65532:65532
EXPOSE 10187
ENTRYPOINT ["/usr/local/bin/idle_drop_exporter"]
CMD ["--config.file", "/etc/idle_drop_exporter/config.yaml"]
