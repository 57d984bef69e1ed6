# syntax=docker/dockerfile:1
# Container image for the hotswap host (not for guests: those are OCI artifacts that hotswap
# pulls itself). Build from the repository root:
#   docker build -t REGISTRY/hotswap:TAG .      (or: podman build -t REGISTRY/hotswap:TAG .)
# Runs as the distroless `nonroot` user (65532) with no shell; see deploy/README.md.

# --- build: the release binary, dynamically linked against glibc and libgcc_s only ---
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: cargo loads every member's manifest (host and tests) even for `-p hotswap`.
# .dockerignore keeps target/ and .git out of the context.
COPY . .
# Cache mounts keep the registry and build directory between builds (BuildKit and buildah).
# The release profile carries debug info (debug = 1); the image drops it and keeps symbols, so
# panics still name functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hotswap \
 && objcopy --strip-debug target/release/hotswap /usr/local/bin/hotswap \
 && mkdir -p /out/cache

# --- runtime: glibc + libgcc, CA certificates, no shell, no package manager ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/hotswap /usr/local/bin/hotswap
# The [cache] dir of deploy/kubernetes/configmap.yaml, owned by the runtime user, so that a
# plain `docker run` (or a volume initialised from the image) can write the compile cache. In
# Kubernetes an emptyDir is mounted over it.
COPY --from=build --chown=65532:65532 /out/cache /var/cache/hotswap
USER 65532:65532
# 8080: HTTP ([server] addr). 9090: admin API ([admin] addr): health, readiness, metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/hotswap"]
CMD ["serve", "--config", "/etc/hotswap/hotswap.toml"]
