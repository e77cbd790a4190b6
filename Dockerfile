# The one Pulse image: every production binary (pulse-operator, pulse-ingest,
# pulse-processor, pulse-query) on a distroless base, run as the non-root UID 65532 that
# the operator's pods and the Helm chart set. Build: `docker build -t pulse:dev .`
# (the project's test machines have no container runtime; operator/tests/install.rs
# checks that the binaries named here are the workspace's).

# --- build: release binaries, the dependency layer cached apart from the sources.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p pulse-operator -p pulse-ingest -p pulse-processor -p pulse-query \
 && mkdir -p /out \
 && cp target/release/pulse-operator target/release/pulse-ingest \
       target/release/pulse-processor target/release/pulse-query /out/

# --- run: glibc and CA certificates only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/pulse-analytics/pulse" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="Pulse: Kubernetes-native real-time product analytics"
COPY --from=build /out/pulse-operator /usr/local/bin/pulse-operator
COPY --from=build /out/pulse-ingest /usr/local/bin/pulse-ingest
COPY --from=build /out/pulse-processor /usr/local/bin/pulse-processor
COPY --from=build /out/pulse-query /usr/local/bin/pulse-query
USER 65532:65532
# Each Deployment sets its command (pulse-ingest, ...); the config and listen address
# come from PULSE_CONFIG and PULSE_LISTEN, as the operator renders them.
ENTRYPOINT []
CMD ["pulse-operator"]
