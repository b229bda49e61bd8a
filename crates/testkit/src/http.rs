//! A small blocking HTTP/1.1 client over one raw connection, so that every
//! byte and every close is visible: the socket is one the caller controls and
//! nothing polls in the background.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::PATIENCE;

/// A response, read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server announced that it closes the connection.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Bytes the head took, up to and including the blank line.
    pub len: usize,
    /// The `content-length`, if any.
    pub content_length: Option<usize>,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(format!("bad response head: {error}"))),
    };
    let status = response.code.ok_or_else(|| invalid("no status".into()))?;
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let content_length = match headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => Some(
            v.trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?,
        ),
        None => None,
    };
    Ok(Some(Head {
        status,
        headers,
        len,
        content_length,
    }))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A request line and headers for `method path`, keep-alive.
pub fn request(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// One raw HTTP/1.1 connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Connects to `addr`; every later read or write waits at most [`PATIENCE`].
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        Self::connect_timeout(addr, PATIENCE)
    }

    /// Connects to `addr`; every later read or write waits at most `timeout`.
    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        Self::with_stream(TcpStream::connect_timeout(&addr, timeout)?, timeout)
    }

    /// Connects to `addr` from the local address `from` (any loopback
    /// address on Linux: 127.0.0.2 is a second client as the server sees
    /// it); every later read or write waits at most [`PATIENCE`].
    pub fn connect_from(addr: SocketAddr, from: IpAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.connect_timeout(&addr.into(), PATIENCE)?;
        Self::with_stream(socket.into(), PATIENCE)
    }

    fn with_stream(stream: TcpStream, timeout: Duration) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(1024),
            timeout,
        })
    }

    /// Sends `GET path` without waiting for its response.
    pub fn send(&mut self, path: &str) -> io::Result<()> {
        self.send_request("GET", path)
    }

    /// Sends `method path` without waiting for its response.
    pub fn send_request(&mut self, method: &str, path: &str) -> io::Result<()> {
        self.send_raw(&request(method, path))
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next response: a body of `content-length` bytes, none for a
    /// status that has none (1xx, 204, 304), else up to the close.
    pub fn recv(&mut self) -> io::Result<Response> {
        self.recv_response(true)
    }

    /// Reads the next response; `with_body` is false for the answer to HEAD.
    fn recv_response(&mut self, with_body: bool) -> io::Result<Response> {
        let mut chunk = [0; 16 * 1024];
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete response",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let bodiless = matches!(head.status, 100..=199 | 204 | 304);
        let content_length = if with_body && !bodiless {
            head.content_length
        } else {
            Some(0)
        };
        loop {
            let have = self.buf.len() - head.len;
            if content_length.is_some_and(|want| have >= want) {
                break;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                if content_length.is_none() {
                    break;
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let end = head.len + content_length.unwrap_or(self.buf.len() - head.len);
        let body = self.buf[head.len..end].to_vec();
        self.buf.drain(..end);
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Reads exactly `n` bytes past what responses consumed (an upgraded protocol).
    pub fn read_raw(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = [0; 4096];
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Sends `GET path` and reads its response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(path)?;
        self.recv()
    }

    /// Sends `method path` and reads its response.
    pub fn call(&mut self, method: &str, path: &str) -> io::Result<Response> {
        self.send_request(method, path)?;
        self.recv_response(method != "HEAD")
    }

    /// Waits up to `timeout` for the server to close the connection (EOF or
    /// reset). Returns whether it did.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the server"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(_) => true,
        };
        self.stream.set_read_timeout(Some(self.timeout)).unwrap();
        closed
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    Conn::connect_timeout(addr, timeout)?.get(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_once_complete() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\nConnection: close\r\n\r\nbench";
        assert_eq!(parse_head(&raw[..20]).unwrap(), None);
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.len, raw.len() - 5);
        assert_eq!(head.content_length, Some(5));
        assert_eq!(
            head.headers[0],
            ("content-type".into(), "text/plain".into())
        );
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[test]
    fn responses_know_their_headers() {
        let response = Response {
            status: 200,
            headers: vec![("connection".into(), "Close".into())],
            body: vec![],
        };
        assert!(response.says_close());
        assert_eq!(response.header("Connection"), Some("Close"));
        assert_eq!(response.header("date"), None);
    }

    #[test]
    fn pipelined_responses_are_split_by_length() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0; 256];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });
        let mut client = Conn::connect_timeout(addr, Duration::from_secs(5)).unwrap();
        client.send("/").unwrap();
        let first = client.recv().unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"hi"[..]));
        let second = client.recv().unwrap();
        assert_eq!((second.status, second.body.len()), (404, 0));
        server.join().unwrap();
    }
}
