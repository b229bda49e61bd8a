//! What the server serves: any hyper service that fits, named once.

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

/// The error type services may return, as hyper accepts it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`Server::serve`](crate::Server::serve) serves: any hyper service, cloneable and sendable
/// across threads, whose response body hyper can send. Implemented for every
/// such service; there is nothing to implement. Wrap a tower service (an axum
/// `Router`, say) with [`from_tower`](crate::from_tower).
pub trait AppService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body.
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> AppService for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}
