//! The library's error type.

use std::io;

use crate::config::ConfigError;

/// Why a load run could not start. Failed requests are never errors: they are
/// counted in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The target's host name did not resolve.
    #[error("cannot resolve target {target}: {source}")]
    Resolve {
        /// The `host:port` as given.
        target: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// HTTP/2 requests were asked for, and the target accepted a connection
    /// but did not answer as HTTP/2 (cleartext, prior knowledge).
    #[error("target {target} does not speak h2c (HTTP/2 with prior knowledge): {reason}")]
    NotH2c {
        /// The `host:port` as given.
        target: String,
        /// What it did instead.
        reason: String,
    },
    /// The control endpoint could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}
