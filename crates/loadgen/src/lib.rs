//! Open-loop HTTP/1.1 load generator that accounts for every request.
//!
//! Requests are started at a fixed rate whatever the response times, over a
//! pool of keep-alive connections and/or a fresh connection each, and every
//! one of them gets exactly one outcome: a 2xx, another status, a refused or
//! failed connect, a reset, a timeout. Nothing is retried, so nothing is
//! hidden. [`run`] (or [`LoadGen`], to watch or stop it from elsewhere)
//! returns a [`Report`], which serialises to the JSON the binary prints.

mod config;
mod conn;
mod control;
mod engine;
mod error;
mod mix;
mod outcome;
mod report;
mod scheduler;
mod stats;
mod worker;

pub use config::{Config, ConfigError, MAX_IN_FLIGHT, MAX_RATE, MAX_WORK_MS, MsRange};
pub use control::ControlServer;
pub use engine::{Handle, LoadGen, run};
pub use error::Error;
pub use mix::{Mode, Route};
pub use outcome::Kind;
pub use report::{
    Connections, ErrorSample, Latency, ModeReport, Modes, Outcomes, Progress, REPORT_VERSION,
    Report, RouteReport, Routes, Second, StopReason,
};
