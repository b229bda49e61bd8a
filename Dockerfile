# syntax=docker/dockerfile:1
# lameduck and loadgen in a distroless image. Build with `just image`.
#
# Stages: `chef` has the toolchain and cargo-chef; `planner` reduces the
# workspace to a recipe of its manifests; `builder` compiles the dependencies
# from that recipe first (a layer that only changes with Cargo.toml/Cargo.lock),
# then the project itself; `runtime` carries the two binaries and nothing else.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-trixie AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# jemalloc's build-time settings: they must be there when the dependencies build.
COPY .cargo .cargo
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p lameduck-cli -p loadgen
COPY . .
RUN cargo build --release --locked -p lameduck-cli -p loadgen

# cc: the binaries link glibc and libgcc_s dynamically (the default gnu target).
# The nonroot variant runs as 65532:65532.
FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="lameduck" \
      org.opencontainers.image.description="An HTTP server for Kubernetes that shuts down without failing a single request" \
      org.opencontainers.image.source="https://github.com/lameduck-rs/lameduck" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /src/target/release/lameduck /lameduck
COPY --from=builder /src/target/release/loadgen /loadgen
USER 65532:65532
EXPOSE 8080 8081
# Exec form: lameduck is PID 1 and receives SIGTERM itself, with no shell between.
ENTRYPOINT ["/lameduck"]
