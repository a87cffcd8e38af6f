# syntax=docker/dockerfile:1
#
# Weir server image.
#
# The image listens on 0.0.0.0:8080 (WEIR_LISTEN below), and a server
# reachable from other machines refuses to start without authentication
# (protected mode). Give it a tokens file (WEIR_AUTH_TOKENS_FILE; make a
# token with `weir auth new-token --principal NAME`) or a JWKS
# (WEIR_AUTH_JWKS_FILE, with WEIR_AUTH_JWT_AUDIENCE/_ISSUER), or, for a
# throwaway local test only, an explicit --allow-anonymous:
#
#   docker build -t weir-server:0.1.0 .
#   docker run --rm -p 8080:8080 -v weir-data:/var/lib/weir \
#     -v "$PWD/tokens.toml:/etc/weir/tokens.toml:ro" \
#     -e WEIR_AUTH_TOKENS_FILE=/etc/weir/tokens.toml weir-server:0.1.0
#   docker run --rm -p 127.0.0.1:8080:8080 weir-server:0.1.0 --allow-anonymous
#
# HTTPS: WEIR_TLS_CERT_FILE and WEIR_TLS_KEY_FILE (PEM; re-read when they
# change), plus WEIR_TLS_CLIENT_CA_FILE for mTLS.
#
# Read-only root filesystem: the server writes only below WEIR_DATA_DIR
# (the volume /var/lib/weir); it needs no writable /tmp, HOME or /etc. Run it
# with `docker run --read-only` (Kubernetes: readOnlyRootFilesystem: true,
# as the Helm chart does); credentials and certificates are only read.
#
# The workspace links Debian's RocksDB 7.8 (librocksdb-dev) instead of
# compiling RocksDB from C++; .cargo/config.toml points the build at it, so
# builder and runtime must both be Debian bookworm. Nothing here names an
# architecture: both base images are multi-arch, and each platform builds
# natively against its own librocksdb-dev (linux/amd64 and linux/arm64).
# One multi-arch image, pushed as a manifest list (needs a buildx builder
# that can build several platforms, e.g. `docker buildx create --use`):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t registry.example.com/weir-server:0.1.0 --push .
#
# A platform other than the build machine's runs under QEMU emulation
# (binfmt_misc; `docker run --privileged --rm tonistiigi/binfmt --install
# arm64`) and takes many times longer than on a native arm64 node added to
# the builder (`docker buildx create --append`).

FROM rust:1-bookworm AS builder
# clang + libclang-dev: bindgen for librocksdb-sys; librocksdb-dev: the
# RocksDB headers and library the workspace links (pulls libsnappy-dev etc.).
# Versions come from the pinned Debian release (bookworm), not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev librocksdb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and target dir between builds; the
# binary is copied out of the (unexported) target cache in the same step.
# The target cache has one id per architecture (the default id, its path,
# would be one cache for all platforms of a multi-arch build, used in turn).
# jemalloc (the server's allocator) fixes its page size when it is built:
# on arm64 it is built for 64 KiB pages, which also runs on kernels with 4
# or 16 KiB pages (RHEL and some clouds boot arm64 with 64 KiB pages).
ARG TARGETARCH
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=weir-target-${TARGETARCH},sharing=locked \
    if [ "$TARGETARCH" = "arm64" ]; then export JEMALLOC_SYS_WITH_LG_PAGE=16; fi \
 && cargo build --release -p weir-server --locked \
 && install -D -m 0755 target/release/weir-server /out/weir-server

FROM debian:bookworm-slim
# librocksdb7.8: the shared RocksDB the binary links (with its snappy, lz4,
# zstd, bz2, zlib and gflags dependencies); ca-certificates for outbound TLS.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 weir \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/weir --shell /usr/sbin/nologin weir \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/weir
COPY --from=builder /out/weir-server /usr/local/bin/weir-server

# Environment variables override a config file (WEIR_CONFIG) and are
# overridden by flags; the Helm chart sets the same two values explicitly.
# No authentication default here: the operator must choose (see the top).
ENV WEIR_LISTEN=0.0.0.0:8080 \
    WEIR_DATA_DIR=/var/lib/weir
VOLUME ["/var/lib/weir"]
WORKDIR /var/lib/weir
EXPOSE 8080
USER 10001:10001
# SIGTERM starts a graceful shutdown (in-flight requests, final flush; up to
# WEIR_SHUTDOWN_TIMEOUT_MS, default 30 s): give `docker stop` -t 40 or more.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the slim image has no HTTP client, and Kubernetes uses its
# own probes (GET /healthz, GET /readyz on port 8080; see helm/weir).
ENTRYPOINT ["/usr/local/bin/weir-server"]
