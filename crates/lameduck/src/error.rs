//! The library's error type.

/// Why [`Server::serve`](crate::Server::serve) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The metrics registry already holds a metric of the same name (two
    /// servers sharing one registry, say).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
