# lameduck: a Kubernetes HTTP server that shuts down without failing a request.
# Run `scripts/just` (or `just`, if installed) to list the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Run the server with the given flags (e.g. `just run --drain-delay 5s`).
run *ARGS:
    cargo run --release -p lameduck -- {{ARGS}}

# Install the Debian packages the tests need (only those missing; uses sudo when not root).
setup:
    scripts/setup-debian

# Run every check CI runs: formatting, lints, unit, integration and doc tests.
test: setup fmt-check lint
    cargo test --workspace --all-targets --locked
    cargo test --workspace --doc --locked

# Format the Rust code.
fmt:
    cargo fmt --all

# Check formatting without changing files.
fmt-check:
    cargo fmt --all --check

# Clippy over every target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Benchmark lameduck against a bare hyper server (throughput, shutdown, memory, /metrics); writes BENCHMARKS.md.
bench *ARGS: setup-bench
    cargo build --release --locked -p lameduck -p lameduck-bench
    cargo run --release --locked --quiet -p lameduck-bench -- {{ARGS}}

# Like `bench`, then exit non-zero if a figure misses its goal by more than its measured spread.
bench-check *ARGS: setup-bench
    cargo build --release --locked -p lameduck -p lameduck-bench
    cargo run --release --locked --quiet -p lameduck-bench -- --check {{ARGS}}

# Install what the benchmarks need besides Rust (wrk).
setup-bench:
    scripts/setup-debian wrk
