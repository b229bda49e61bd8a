//! `POST /`: echoes the request body, so that a client can send a request
//! that no proxy may retry on its own and check that the answer is its own.
//! The body is read up to [`MAX_ECHO`] bytes and no further.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use lameduck::BoxError;

use super::{DemoBody, text};

/// Largest body `POST /` echoes, in bytes; a longer one gets 413.
pub const MAX_ECHO: usize = 64 * 1024;

const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Whether the body announces more than [`MAX_ECHO`] bytes (a
/// `content-length` too large), so that it need not be read at all.
pub(super) fn announced_too_large(body: &impl Body) -> bool {
    body.size_hint().lower() > MAX_ECHO as u64
}

/// Reads the body, at most [`MAX_ECHO`] bytes of it, and answers with it. A
/// body that does not arrive whole (the client went away, a malformed
/// chunk) is the client's problem: 400, which it may never read.
pub(super) async fn echo<B>(body: B) -> Response<DemoBody>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, MAX_ECHO).collect().await {
        Ok(collected) => echoed(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => too_large(),
        Err(_) => text(StatusCode::BAD_REQUEST, "incomplete request body\n"),
    }
}

/// The answer to a body of `bytes`.
pub(super) fn echoed(bytes: Bytes) -> Response<DemoBody> {
    let mut response = Response::new(DemoBody::full(bytes));
    response.headers_mut().insert(CONTENT_TYPE, OCTETS);
    response
}

pub(super) fn too_large() -> Response<DemoBody> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body must be at most 65536 bytes\n",
    )
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    use super::*;

    async fn body_of(response: Response<DemoBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    /// A body in chunks, with no length announced (as chunked encoding).
    fn chunked(
        chunks: Vec<Result<Bytes, std::io::Error>>,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
        StreamBody::new(stream::iter(
            chunks.into_iter().map(|chunk| chunk.map(Frame::data)),
        ))
    }

    #[tokio::test]
    async fn echoes_the_same_bytes() {
        let sent = Bytes::from((0..=255u8).cycle().take(3000).collect::<Vec<u8>>());
        let response = echo(Full::<Bytes>::new(sent.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
        assert_eq!(body_of(response).await, sent);

        let parts = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        assert_eq!(body_of(echo(chunked(parts)).await).await, "abcd");
        let empty = echo(Full::<Bytes>::new(Bytes::new())).await;
        assert_eq!(empty.status(), StatusCode::OK);
        assert!(body_of(empty).await.is_empty());
    }

    #[tokio::test]
    async fn the_limit_is_64_kib_however_the_body_comes() {
        let full = |n: usize| Full::<Bytes>::new(Bytes::from(vec![b'x'; n]));
        assert!(!announced_too_large(&full(MAX_ECHO)));
        assert!(announced_too_large(&full(MAX_ECHO + 1)));
        let whole = echo(full(MAX_ECHO)).await;
        assert_eq!(whole.status(), StatusCode::OK);
        assert_eq!(body_of(whole).await.len(), MAX_ECHO);
        // Nothing announced: read up to the limit, then refused.
        let chunks = (0..5)
            .map(|_| Ok(Bytes::from(vec![b'y'; 16 * 1024 + 1])))
            .collect();
        let response = echo(chunked(chunks)).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_bad_request() {
        let chunks = vec![
            Ok(Bytes::from_static(b"start")),
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "gone",
            )),
        ];
        let response = echo(chunked(chunks)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
