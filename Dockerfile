# syntax=docker/dockerfile:1
# The Logistis server image: the `logistis` binary and the shipped Rust plugins, on a small
# runtime, as a non-root user, with nothing written outside the volumes the manifests mount
# (deploy/). `make image`, or:
#   docker build --build-arg BASEIMAGE=… --build-arg RUNIMAGE=… -t REPO:TAG .
#
# BASEIMAGE: a Rust toolchain (the workspace's rust-version or newer) with rustup (for the
#   wasm32-wasip2 target) and a C compiler (ring and mimalloc build C code).
# RUNIMAGE: a runtime with glibc at least as new as BASEIMAGE's; the binary needs nothing
#   else (no shell, no OpenSSL: TLS is rustls).
ARG BASEIMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNIMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BASEIMAGE} AS build
# The Rust plugins shipped in the ConfigMap (package logistis-plugin-NAME → NAME.wasm); the
# same list as PLUGINS in the Makefile.
ARG PLUGINS="users namespaces resources sink-log sink-webhook sink-slack"
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock. The caches only speed up
# rebuilds; the results are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    cargo build --locked --release -p logistis --bin logistis; \
    packages=""; \
    for p in $PLUGINS; do packages="$packages -p logistis-plugin-$p"; done; \
    cargo build --locked --profile plugin --target wasm32-wasip2 $packages; \
    mkdir -p /out/bin /out/plugins; \
    cp target/release/logistis /out/bin/logistis; \
    for p in $PLUGINS; do \
        cp "target/wasm32-wasip2/plugin/logistis_plugin_$(echo "$p" | tr - _).wasm" "/out/plugins/$p.wasm"; \
    done

FROM ${RUNIMAGE}
COPY --from=build /out/bin/logistis /usr/local/bin/logistis
# The same components as the ConfigMap, for a plugins volume filled from the image.
COPY --from=build /out/plugins/ /usr/share/logistis/plugins/
# Numeric, so that the kubelet can check runAsNonRoot.
USER 65532:65532
EXPOSE 8443 8081
ENTRYPOINT ["/usr/local/bin/logistis"]
CMD ["serve", "--help"]
