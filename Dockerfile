# syntax=docker/dockerfile:1
# The recording-operator image: a release build without the simulators (`--no-default-features`
# drops the `demo` feature and with it the sim crate), on a distroless runtime as a non-root user.
#
#   docker build -t recording-operator:0.1.0 .

ARG RUST_VERSION=1.95

# ---- build ----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# The workspace: the operator crate and the simulators' crate (a workspace member cargo must
# see, though the release binary does not link it).
COPY Cargo.toml Cargo.lock ./
COPY sim ./sim
COPY src ./src

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --no-default-features --bin recording-operator \
 && install -D -m 0755 target/dist/recording-operator /out/recording-operator

# ---- runtime --------------------------------------------------------------------------------
# glibc and libgcc only (TLS is rustls): the distroless "cc" base, its non-root variant.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/recording-operator /usr/local/bin/recording-operator
# uid/gid 65532 ("nonroot"), matching the Deployment's runAsUser/runAsGroup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/recording-operator"]
CMD ["run", "--config=/etc/recording-operator/config.yaml"]
