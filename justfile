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

# Run every check CI runs: formatting, lints, chart checks, unit and integration tests.
test: setup fmt-check lint chart-test
    cargo test --workspace --all-targets --locked

# Format the Rust code.
fmt:
    cargo fmt --all

# Check formatting without changing files.
fmt-check:
    cargo fmt --all --check

# Clippy over every target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Check the chart, deploy/ and the Dockerfile: lint, render, strict validation, semantics, hadolint.
chart-test:
    python3 scripts/chart_check.py

# Re-render deploy/manifests/lameduck.yaml from the chart's default values.
generate:
    python3 scripts/chart_check.py generate
