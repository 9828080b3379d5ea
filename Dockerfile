# SynqX: `synqx` (CLI and step runner) and `synqx-operator` on a distroless base, running as
# UID 65532 with no shell.
#
#   docker build -t ghcr.io/synqx/synqx:0.1.0 .
#
# scripts/image build builds the `runtime` stage of this file with buildah where no
# registry is reachable: binaries built on the host (--build-context binaries=DIR) and a
# base assembled from Debian packages (--build-arg BASE_IMAGE=...).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- binaries: a release build of the workspace -------------------------------------------
FROM ${RUST_IMAGE} AS binaries
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin synqx --bin synqx-operator \
 && objcopy --strip-all target/release/synqx /synqx \
 && objcopy --strip-all target/release/synqx-operator /synqx-operator

# --- runtime ------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="SynqX" \
      org.opencontainers.image.description="Kubernetes-native ETL engine: the synqx runner and the synqx-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /synqx /synqx-operator /usr/local/bin/
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/synqx"]
CMD ["--help"]
