# syntax=docker/dockerfile:1.7@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e
# ragway's container image: the release binary on Debian slim, running as a non-root user with
# the default offline models and an optional prebuilt FAISS store. Build it from the repository
# root after `scripts/fetch-models.sh` (and, for a store, `ragway ingest --store faiss ...`):
#
#   docker build --platform linux/amd64 -t ragway .
#   docker build --platform linux/amd64 --build-arg FAISS_STORE=path/to/store -t ragway .
#
# It serves the built-in offline default on 0.0.0.0:8000; mount a configuration and point
# RAGWAY_CONFIG at it to serve remote models. crates/ragway/tests/dockerfile.rs checks what
# this file relies on (copied files exist or are fetched, port, health check, user).
#
# The base images and the frontend in the syntax line are pinned by digest (the multi-platform
# image index, so --platform still picks its member): a tag moves when the image is rebuilt, a
# digest does not. These are the indexes the tags pointed to on 2026-09-27 (as BuildKit resolved
# them in public build logs of that day; no Docker engine resolved them here). To move to newer
# ones (the base images' own packages get Debian's security fixes only this way), take the
# "Digest:" line of `docker buildx imagetools inspect IMAGE:TAG` for rust:1.95-bookworm,
# debian:bookworm-slim and docker/dockerfile:1.7, keeping the tag beside the digest;
# crates/ragway/tests/dockerfile.rs refuses a base image or frontend without a digest.
ARG RUST_IMAGE=rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

# ---- build: the release binary --------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
# FAISS and llama.cpp are compiled from source (cmake, a C++ compiler, BLAS); bindgen needs
# libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ libopenblas-dev libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .cargo/config.toml carries the llama.cpp CPU flags (x86-64-v3); examples/offline.toml is
# compiled into the binary as its default configuration.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY examples examples
# The dependency layer: BuildKit cache mounts keep the crate registry and the compiled
# dependencies (FAISS and llama.cpp above all) from one build to the next, so a source change
# rebuilds only ragway's own crates. The binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ragway \
 && cp target/release/ragway /usr/local/bin/ragway

# ---- store: the optional prebuilt FAISS store --------------------------------------------
FROM ${RUNTIME_IMAGE} AS store
# A folder of the build context holding a FAISS store (the offline default's is data/faiss,
# written by `ragway ingest --store faiss`). When it is absent the image starts with an empty
# store, which POST /stores/faiss/documents fills.
ARG FAISS_STORE=data/faiss
RUN --mount=type=bind,target=/context \
    mkdir -p /store \
 && if [ -d "/context/${FAISS_STORE}" ]; then \
      cp -a "/context/${FAISS_STORE}/." /store/ && echo "FAISS store: ${FAISS_STORE}"; \
    else \
      echo "FAISS store: ${FAISS_STORE} not found, the image starts with an empty store"; \
    fi

# ---- runtime --------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# libopenblas0 provides libblas.so.3 and liblapack.so.3 (FAISS), libgomp1 OpenMP (llama.cpp,
# FAISS); ca-certificates for HTTPS to OpenAI and AWS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 libgomp1 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ragway \
 && useradd --system --uid 10001 --gid ragway --home-dir /app --shell /usr/sbin/nologin ragway \
 && mkdir -p /app/models /app/data \
 && chown ragway:ragway /app /app/data
WORKDIR /app
COPY --from=builder /usr/local/bin/ragway /usr/local/bin/ragway
# The offline default's models (scripts/fetch-models.sh puts them in models/); read-only.
COPY models/all-MiniLM-L6-v2 models/all-MiniLM-L6-v2
COPY models/SmolLM2-135M-Instruct.Q4_1.gguf models/SmolLM2-135M-Instruct.Q4_1.gguf
# The store is written at run time (documents added through the API), so the user owns it.
COPY --from=store --chown=10001:10001 /store data/faiss

# llama.cpp's OpenMP threads spin while they wait unless told otherwise.
ENV OMP_WAIT_POLICY=PASSIVE \
    RAGWAY_BIND=0.0.0.0:8000 \
    RUST_LOG=info
USER 10001:10001
EXPOSE 8000
# On SIGTERM ragway stops accepting, fails /readyz and lets the requests in flight finish for
# up to `[server] shutdown_grace_secs` (25 s), then exits 0. ECS waits 30 s before SIGKILL by
# default; Docker waits only 10 s, so stop with `docker stop -t 30` (or run --stop-timeout 30).
STOPSIGNAL SIGTERM
# `ragway healthcheck --live` GETs /healthz on RAGWAY_BIND's port (the image has no curl):
# whether the process answers. An orchestrator restarts a container that fails it, and an
# outage of a model or a database must not restart every replica; /readyz is for routing.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ragway", "healthcheck", "--live"]
# `docker run IMAGE` serves; `docker run IMAGE ingest --store faiss ...` runs another command.
ENTRYPOINT ["ragway"]
CMD ["serve"]
