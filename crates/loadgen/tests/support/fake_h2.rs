//! An HTTP/2 server written frame by frame, to send GOAWAY and RST_STREAM
//! exactly when a test wants them. It decodes nothing but frame headers:
//! requests are told apart by connection and stream id, and every answer is
//! a HEADERS frame with the HPACK byte 0x88 (`:status 200`) and END_STREAM.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

pub const NO_ERROR: u32 = 0x0;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const REFUSED_STREAM: u32 = 0x7;

/// What to do with a request, by connection (0 is the first one accepted,
/// the load generator's probe) and stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `:status 200`, no body.
    Answer,
    /// `:status 200` and a body of these bytes.
    AnswerWith(&'static str),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// Nothing (yet).
    Hold,
}

/// Once connection `conn` has read the HEADERS of all of `after`, send
/// GOAWAY(`last_stream_id`, NO_ERROR) and close.
#[derive(Debug, Clone)]
pub struct GoAwayAfter {
    pub conn: u64,
    pub after: &'static [u32],
    pub last_stream_id: u32,
}

type Decide = dyn Fn(u64, u32) -> Act + Send + Sync;

#[derive(Debug)]
pub struct FakeH2 {
    pub addr: SocketAddr,
    /// (connection, stream id) of every request HEADERS read, in order.
    pub requests: Arc<Mutex<Vec<(u64, u32)>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeH2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeH2 {
    pub async fn start(
        decide: impl Fn(u64, u32) -> Act + Send + Sync + 'static,
        goaway: Option<GoAwayAfter>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let decide: Arc<Decide> = Arc::new(decide);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            for index in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(
                    stream,
                    index,
                    decide.clone(),
                    goaway.clone().filter(|g| g.conn == index),
                    log.clone(),
                ));
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// The requests of the run, without the probe's (connection 0).
    pub fn run_requests(&self) -> Vec<(u64, u32)> {
        let all = self.requests.lock().unwrap().clone();
        all.into_iter().filter(|&(conn, _)| conn > 0).collect()
    }
}

pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream_id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn goaway_frame(last_stream_id: u32, code: u32) -> Vec<u8> {
    let mut p = last_stream_id.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    frame(GOAWAY, 0, 0, &p)
}

async fn serve(
    mut stream: TcpStream,
    index: u64,
    decide: Arc<Decide>,
    goaway: Option<GoAwayAfter>,
    log: Arc<Mutex<Vec<(u64, u32)>>>,
) {
    let _ = stream.set_nodelay(true);
    let mut preface = [0u8; 24];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    if stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    let mut waiting: BTreeSet<u32> = goaway
        .as_ref()
        .map(|g| g.after.iter().copied().collect())
        .unwrap_or_default();
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return;
        }
        let reply = match kind {
            SETTINGS if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
            HEADERS => {
                log.lock().unwrap().push((index, id));
                match decide(index, id) {
                    Act::Answer => frame(HEADERS, END_STREAM | END_HEADERS, id, &[0x88]),
                    Act::AnswerWith(body) => {
                        let mut f = frame(HEADERS, END_HEADERS, id, &[0x88]);
                        f.extend(frame(DATA, END_STREAM, id, body.as_bytes()));
                        f
                    }
                    Act::Reset(code) => frame(RST_STREAM, 0, id, &code.to_be_bytes()),
                    Act::Hold => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
            return;
        }
        if kind == HEADERS
            && let Some(g) = &goaway
            && waiting.remove(&id)
            && waiting.is_empty()
        {
            let _ = stream
                .write_all(&goaway_frame(g.last_stream_id, NO_ERROR))
                .await;
            // FIN after the GOAWAY, then read until the client closes: closing
            // with unread bytes would send RST, which may overtake the GOAWAY.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 1024];
            let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
            return;
        }
    }
}
