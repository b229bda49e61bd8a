# lameduck: a Kubernetes HTTP server that shuts down without failing a request.
# Run `scripts/just` (or `just`, if installed) to list the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]
# Only evaluate the variables a recipe uses (the image tag asks git).
set lazy

# Image repository for `image`, `kind-load` and `deploy` (override with IMAGE_REPO).
image_repo := env("IMAGE_REPO", "ghcr.io/lameduck-rs/lameduck")
# The commit, plus -dirty when the work tree has changes, so every build has its own tag.
image_tag := `echo "$(git rev-parse --short HEAD)$([ -z "$(git status --porcelain)" ] || echo -dirty)"`
version := `sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1`
kind_cluster := env("KIND_CLUSTER", "lameduck")

# List the recipes.
default:
    @{{just_executable()}} --justfile {{justfile()}} --list --unsorted

# Run the server with the given flags (e.g. `just run --drain-delay 5s`).
run *ARGS:
    cargo run --release -p lameduck-cli -- {{ARGS}}

# Install the Debian packages the tests need (only those missing; uses sudo when not root).
setup:
    scripts/setup-debian prometheus

# Run every check CI runs: formatting, lints, API docs, chart checks, unit, integration and doc tests, the local rollout suite, the rollout suite on a real cluster.
test: setup fmt-check lint doc chart-test
    python3 -m unittest discover --start-directory scripts/cluster
    cargo test --workspace --all-targets --locked
    cargo test --workspace --doc --locked
    {{just_executable()}} --justfile {{justfile()}} e2e-local
    # The cluster goes down however the suite ends; its build stays cached.
    trap '{{just_executable()}} --justfile {{justfile()}} cluster-down' EXIT; {{just_executable()}} --justfile {{justfile()}} e2e-cluster

# Format the Rust code.
fmt:
    cargo fmt --all

# Build the API docs of every crate; warnings are errors.
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# Check formatting without changing files.
fmt-check:
    cargo fmt --all --check

# Clippy over every target, warnings are errors; also the e2e binary the demo builds (no cluster backend).
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy -p e2e --no-default-features --all-targets --locked -- -D warnings

# Check the chart, deploy/ and the Dockerfile: lint, render, strict validation, semantics, hadolint.
chart-test:
    python3 scripts/chart_check.py

# Re-render deploy/manifests/lameduck.yaml from the chart's default values.
generate:
    python3 scripts/chart_check.py generate

# Build the container image, tagged with the git commit (plus -dirty for uncommitted changes).
image:
    docker build --tag {{image_repo}}:{{image_tag}} --build-arg VERSION={{version}} --build-arg REVISION={{image_tag}} .
    @echo "built {{image_repo}}:{{image_tag}}"

# Create the local kind cluster (one control plane, two workers) unless it exists.
kind-up:
    kind get kubeconfig --name {{kind_cluster}} >/dev/null 2>&1 || kind create cluster --name {{kind_cluster}} --config deploy/kind/cluster.yaml

# Build the image and load it into the kind cluster's nodes.
kind-load: image
    kind load docker-image {{image_repo}}:{{image_tag}} --name {{kind_cluster}}

# Install or upgrade the chart in kind with the image just built, and wait until it is ready.
deploy: kind-up kind-load
    helm upgrade --install lameduck charts/lameduck --kube-context kind-{{kind_cluster}} --namespace default --set-string image.repository={{image_repo}} --set-string image.tag={{image_tag}} --wait --timeout 5m

# Install the minimal Prometheus of deploy/prometheus into the kind cluster.
kind-prometheus: kind-up
    kubectl --context kind-{{kind_cluster}} apply -f deploy/prometheus/
    kubectl --context kind-{{kind_cluster}} -n monitoring rollout status deployment/prometheus --timeout 5m

# Roll lameduck under load without a cluster and print the report (the README's main job).
demo: setup _e2e-build (_render "graceful")
    target/quick/e2e local --label demo --rendered target/e2e/graceful.rendered.json --expect no-failures --lameduck target/quick/lameduck

# The rollout suite without a cluster, as CI runs it: the chart's defaults, the negative control, and routers slower than the preStop.
e2e-local: setup _e2e-build (_render "graceful") (_render "naive") (_render "drain-covers-lag")
    target/quick/e2e local --label graceful --rendered target/e2e/graceful.rendered.json --expect no-failures --lameduck target/quick/lameduck
    target/quick/e2e local --label naive --rendered target/e2e/naive.rendered.json --expect failures --lameduck target/quick/lameduck
    target/quick/e2e local --label lag-beyond-prestop --lag 7s --rollouts 1 --rendered target/e2e/graceful.rendered.json --expect failures-any-protocol --lameduck target/quick/lameduck
    target/quick/e2e local --label drain-covers-lag --lag 7s --rollouts 1 --rendered target/e2e/drain-covers-lag.rendered.json --expect no-failures --lameduck target/quick/lameduck

# The rollout suite in kind (needs docker, kind, helm, kubectl): the chart's defaults, then the negative control.
e2e: kind-up kind-load kind-prometheus
    cargo build --profile quick --locked -p e2e
    target/quick/e2e cluster --label graceful --values e2e/values/graceful.yaml --expect no-failures --image {{image_repo}}:{{image_tag}} --context kind-{{kind_cluster}} --prometheus monitoring/prometheus:web
    target/quick/e2e cluster --label naive --values e2e/values/naive.yaml --expect failures --image {{image_repo}}:{{image_tag}} --context kind-{{kind_cluster}} --prometheus monitoring/prometheus:web

# Install the Debian packages the local cluster runs on (containerd, runc, CNI plugins, nftables; gcc and the static libc for Kubernetes' pause.c).
setup-cluster:
    scripts/setup-debian containerd runc containernetworking-plugins nftables gcc libc6-dev

# Start a one-node Kubernetes cluster built from upstream sources, in its own network namespace (root; first build ~11 min, then cached).
cluster-up: setup-cluster
    python3 scripts/cluster up

# Stop the local cluster and remove its namespace, processes, mounts and pod sandboxes.
cluster-down:
    python3 scripts/cluster down

# Run a command inside the local cluster's namespace, with its KUBECONFIG and kubectl and helm on PATH (a shell without one).
[positional-arguments]
cluster-shell *CMD:
    python3 scripts/cluster shell "$@"

# Draw deploy/grafana's Shutdowns row from the local cluster's Prometheus after `e2e-cluster` (installs matplotlib into .venv).
dashboard out="docs/shutdowns-dashboard.png":
    .venv/bin/python -m pip install --quiet --disable-pip-version-check matplotlib==3.11.2
    .venv/bin/python scripts/cluster dashboard --namespace scrape-30s --runs target/e2e/scrape-30s.json target/e2e/scrape-30s-forced.json --out {{out}}

# Build lameduck's image without a registry and import it into the local cluster; the last line is its reference.
cluster-load:
    python3 scripts/cluster load

# Exit 0 if the local cluster's containerd has the image REF, else one line naming the command that imports it.
cluster-has-image REF:
    python3 scripts/cluster has-image {{quote(REF)}}

# The rollout suite on the local cluster: through kube-proxy (the chart's defaults, the negative control, a drain delay), through Traefik (the defaults, the negative control, the keep-alive race with a short idle close and without), with Prometheus scraping every 30 s (a clean and a forced shutdown), then `helm test`.
e2e-cluster: cluster-up
    #!/usr/bin/env bash
    set -euo pipefail
    # Interrupted or not, the cluster stays up for the next run.
    trap 'echo "e2e-cluster: interrupted; the cluster stays up: scripts/just cluster-down stops it" >&2; exit 130' INT TERM
    image=$(python3 scripts/cluster load | tail -n 1)
    python3 scripts/cluster prometheus
    python3 scripts/cluster traefik
    cargo build --profile quick --locked -p e2e
    run() {
        # A missing image in one line now, not after Helm's 3-minute --wait.
        python3 scripts/cluster has-image "$image"
        python3 scripts/cluster shell target/quick/e2e cluster --context lameduck-local --image "$image" \
            --prometheus monitoring/prometheus:web "$@"
    }
    run --label cluster-graceful --values e2e/values/graceful.yaml --expect no-failures
    run --label cluster-naive --values e2e/values/naive.yaml --expect failures --rollouts 1
    run --label cluster-drain-delay --values e2e/values/drain-covers-lag.yaml --expect no-failures --rollouts 1
    traefik=(--values e2e/values/ingress.yaml --via traefik/traefik:80 --proxy traefik)
    run --label ingress-graceful --values e2e/values/graceful.yaml "${traefik[@]}" --expect no-failures --rollouts 3
    run --label ingress-naive --values e2e/values/naive.yaml "${traefik[@]}" --expect failures --rollouts 1
    # No rollout: bursts of POSTs whose gaps sweep across a 250 ms idle close, so that Traefik
    # reuses its pooled connections just as a server that closes them early does; then the same
    # load against the chart's idle timeout, which outlives Traefik's pool.
    steady=(--rollouts 0 --bursts 120 --burst-size 100 --burst-period 235ms..265ms --post-fraction 1 --slow-fraction 0
            --fresh-fraction 0 --h2-fraction 0 --keepalive-conns 100 --sse-clients 0 --ws-clients 0)
    run --label steady-idle-250ms --values e2e/values/graceful.yaml --values e2e/values/idle-250ms.yaml "${traefik[@]}" "${steady[@]}" --expect failures
    run --label steady-default --values e2e/values/graceful.yaml "${traefik[@]}" "${steady[@]}" --expect no-failures
    # deploy/prometheus scrapes this namespace every 30 s; the warm-up lets it scrape each pod
    # before its rollout, as it would have scraped a pod that ran for hours.
    slow=(--namespace scrape-30s --rollouts 1 --warmup 40s)
    run --label scrape-30s --values e2e/values/graceful.yaml "${slow[@]}" --expect no-failures
    run --label scrape-30s-forced --values e2e/values/forced.yaml "${slow[@]}" --expect forced \
        --slow-fraction 0.01 --slow-ms 4000-6000
    python3 scripts/cluster shell helm test lameduck

# The quick profile, the system allocator and no cluster backend: a first build in about 1.5 minutes.
_e2e-build:
    cargo build --profile quick --locked --no-default-features -p lameduck-cli -p e2e

_render values:
    python3 scripts/render_chart.py --values e2e/values/{{values}}.yaml --out target/e2e/{{values}}.rendered.json

# Benchmark lameduck against a bare hyper server (throughput, shutdown, memory, /metrics, callgrind instructions per request) and the load generator's HTTP/2 speed against h2load; writes BENCHMARKS.md.
bench *ARGS: setup-bench
    cargo build --release --locked -p lameduck-cli -p lameduck-bench -p loadgen
    cargo run --release --locked --quiet -p lameduck-bench -- {{ARGS}}

# Like `bench`, then exit non-zero if a figure misses its goal by more than its measured spread.
bench-check *ARGS: setup-bench
    cargo build --release --locked -p lameduck-cli -p lameduck-bench -p loadgen
    cargo run --release --locked --quiet -p lameduck-bench -- --check {{ARGS}}

# Install what the benchmarks need besides Rust (wrk; h2load, from nghttp2-client; valgrind, for callgrind).
setup-bench:
    scripts/setup-debian wrk nghttp2-client valgrind
