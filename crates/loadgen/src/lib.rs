//! Open-loop HTTP/1.1 and HTTP/2 load generator that accounts for every
//! request.
//!
//! Requests are started at a fixed rate whatever the response times (or in
//! bursts, all of a burst at once, the gaps between bursts swept across a
//! range: see [`Bursts`]), over a pool of HTTP/1.1 keep-alive connections,
//! a fresh connection each, and/or streams on a pool of HTTP/2 (h2c)
//! connections, and every one of them gets
//! exactly one outcome: a 2xx, another status, a refused or failed connect, a
//! reset, a timeout, and for a `POST /` an answer that does not echo its
//! body. Nothing is retried, so nothing is hidden; the one
//! exception, an HTTP/2 stream the server declares unprocessed (RFC 9113
//! §8.7), is resent once and counted apart as `refused_resent`.
//!
//! Beside the requests, long-lived clients (Server-Sent Events readers and
//! WebSocket echo clients) hold a stream each for the whole run, open the
//! next one when the server ends theirs cleanly, and count every other end
//! as a failure, by cause. [`run`] (or
//! [`LoadGen`], to watch or stop it from elsewhere) returns a [`Report`],
//! which serialises to the JSON the binary prints.

mod args;
mod bursts;
mod config;
mod conn;
mod context;
mod control;
mod echo;
mod engine;
mod error;
mod h2;
mod mix;
mod outcome;
mod report;
mod scheduler;
mod serde_ms;
mod sniff;
mod stats;
mod streams;
mod worker;

pub use bursts::{BURST_PERIOD_RANGE, Bursts, MAX_BURST_SIZE, MAX_BURSTS, PeriodRange};
pub use config::{
    Config, ConfigError, DEFAULT_H2_CONNS, DEFAULT_H2_STREAMS, MAX_IN_FLIGHT, MAX_RATE,
    MAX_STREAM_CLIENTS, MAX_WORK_MS, MsRange, STREAM_INTERVAL_RANGE,
};
pub use control::ControlServer;
pub use engine::{Handle, LoadGen, run};
pub use error::Error;
pub use mix::{MAX_POST_BODY, MIN_POST_BODY, Method, Mode, Route};
pub use outcome::{Kind, Origin, PHASE_HEADER, REPLICA_HEADER};
pub use report::{
    BurstReport, BurstsReport, Connections, ErrorSample, Latency, MethodReport, Methods,
    ModeReport, Modes, Outcomes, Progress, REPORT_VERSION, Report, RouteReport, Routes, Second,
    SecondFailures, StatusByOrigin, StopReason, StreamErrorSample, StreamFailure, StreamFailures,
    StreamReport, Streams,
};
