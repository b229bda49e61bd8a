//! The `lameduck` binary's parts, apart from the server library: the
//! command line, logging setup, the probe client the chart's `helm test` pod
//! runs, the termination log, and the demo application (`/`, `/work`,
//! `/events`, `/ws`).

pub mod cli;
pub mod demo;
pub mod probe;
pub mod telemetry;
pub mod termination;
