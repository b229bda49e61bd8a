//! Benchmarks lameduck against a bare hyper server in one run: throughput and
//! latency under wrk, shutdown latency, memory, and `/metrics` rendering; and
//! the load generator's own HTTP/2 speed against h2load's. The
//! `lameduck-bench` binary runs them and writes BENCHMARKS.md; `bare-hyper`
//! is the baseline server.
//!
//! Every binary of this crate, the baselines included, allocates with
//! jemalloc configured as lameduck's binary is (`.cargo/config.toml`), so
//! that the comparisons measure the servers, not their allocators.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod baseline;
pub mod callgrind;
pub mod h2load;
pub mod loadgen;
pub mod machine;
pub mod measure;
pub mod process;
pub mod report;
pub mod results;
pub mod stats;
pub mod tool;
pub mod wrk;
