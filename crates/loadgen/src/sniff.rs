//! HTTP/2 frame headers of the server→client direction, parsed as the bytes
//! pass by.
//!
//! The `h2` crate does not tell a stream's owner the last-stream-id of a
//! GOAWAY, which is what says whether the server processed a stream
//! (RFC 9113 §6.8, §8.7). So the connection's reads go through this parser,
//! which sees every byte before `h2` does and reports GOAWAY and RST_STREAM
//! frames. Only frame headers and the first payload bytes of those two frame
//! types are looked at; everything else is skipped by length, so frames split
//! across reads, or several in one read, cost nothing extra.

/// Length of a frame header: 24-bit length, type, flags, 31-bit stream id.
const HEADER_LEN: usize = 9;

/// Frame type RST_STREAM (RFC 9113 §6.4).
pub(crate) const RST_STREAM: u8 = 0x3;
/// Frame type SETTINGS (RFC 9113 §6.5).
pub(crate) const SETTINGS: u8 = 0x4;
/// Frame type GOAWAY (RFC 9113 §6.8).
pub(crate) const GOAWAY: u8 = 0x7;
/// Error code REFUSED_STREAM (RFC 9113 §7): the stream was not processed.
pub(crate) const REFUSED_STREAM: u32 = 0x7;

/// A frame of interest, complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// GOAWAY: streams above `last_stream_id` were not and will not be
    /// processed.
    GoAway {
        last_stream_id: u32,
        error_code: u32,
    },
    /// RST_STREAM of one stream.
    Reset { stream_id: u32, error_code: u32 },
}

/// The parser: a frame header being assembled, or a payload being passed.
#[derive(Debug, Default)]
pub(crate) struct Sniffer {
    head: [u8; HEADER_LEN],
    head_len: usize,
    /// Payload length of the current frame, and the bytes not yet passed.
    len: usize,
    remaining: usize,
    kind: u8,
    stream_id: u32,
    /// The first payload bytes of a GOAWAY or RST_STREAM.
    payload: [u8; 8],
    payload_len: usize,
    /// How many payload bytes the current frame's report needs.
    want: usize,
    /// Type of the first frame (a server starts with SETTINGS).
    first_kind: Option<u8>,
}

impl Sniffer {
    /// Type of the first frame header read, once one is complete. Anything
    /// but SETTINGS means the peer does not speak HTTP/2.
    pub(crate) fn first_kind(&self) -> Option<u8> {
        self.first_kind
    }

    /// Passes `bytes`, the next ones read from the server, and reports each
    /// frame of interest completed by them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.head_len < HEADER_LEN {
                let take = (HEADER_LEN - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
                self.head_len += take;
                bytes = &bytes[take..];
                if self.head_len == HEADER_LEN {
                    self.start_payload();
                    if self.remaining == 0 {
                        self.end_frame(&mut on);
                    }
                }
                continue;
            }
            let take = self.remaining.min(bytes.len());
            if self.payload_len < self.want {
                let keep = (self.want - self.payload_len).min(take);
                self.payload[self.payload_len..self.payload_len + keep]
                    .copy_from_slice(&bytes[..keep]);
                self.payload_len += keep;
            }
            self.remaining -= take;
            bytes = &bytes[take..];
            if self.remaining == 0 {
                self.end_frame(&mut on);
            }
        }
    }

    fn start_payload(&mut self) {
        let h = &self.head;
        self.len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        self.remaining = self.len;
        self.kind = h[3];
        self.stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.first_kind.get_or_insert(self.kind);
        self.payload_len = 0;
        self.want = match self.kind {
            GOAWAY => 8,
            RST_STREAM => 4,
            _ => 0,
        };
    }

    fn end_frame(&mut self, on: &mut impl FnMut(Frame)) {
        let word = |i: usize| {
            u32::from_be_bytes([
                self.payload[i],
                self.payload[i + 1],
                self.payload[i + 2],
                self.payload[i + 3],
            ])
        };
        // Malformed frames (wrong size or stream) are connection errors that
        // `h2` acts on; they say nothing about which streams were processed.
        match self.kind {
            GOAWAY if self.len >= 8 && self.stream_id == 0 => on(Frame::GoAway {
                last_stream_id: word(0) & 0x7fff_ffff,
                error_code: word(4),
            }),
            RST_STREAM if self.len == 4 && self.stream_id != 0 => on(Frame::Reset {
                stream_id: self.stream_id,
                error_code: word(0),
            }),
            _ => {}
        }
        self.head_len = 0;
        self.payload_len = 0;
        self.want = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream_id.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let mut p = last.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(debug);
        frame(GOAWAY, 0, 0, &p)
    }

    fn rst(stream_id: u32, code: u32) -> Vec<u8> {
        frame(RST_STREAM, 0, stream_id, &code.to_be_bytes())
    }

    /// A server's typical opening and a few streams' worth of frames.
    fn conversation() -> Vec<u8> {
        let mut wire = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        wire.extend(frame(SETTINGS, 1, 0, &[]));
        wire.extend(frame(0x1, 0x5, 1, &[0x88]));
        wire.extend(frame(0x0, 0x1, 3, &[b'x'; 300]));
        wire.extend(rst(5, REFUSED_STREAM));
        wire.extend(goaway(0x8000_0000 | 7, 0, b"draining"));
        wire.extend(frame(0x6, 0, 0, &[0; 8]));
        wire.extend(rst(9, 0x2));
        wire.extend(goaway(3, 0x2, b""));
        wire
    }

    fn expected() -> Vec<Frame> {
        vec![
            Frame::Reset {
                stream_id: 5,
                error_code: REFUSED_STREAM,
            },
            // The reserved bit of last-stream-id is ignored.
            Frame::GoAway {
                last_stream_id: 7,
                error_code: 0,
            },
            Frame::Reset {
                stream_id: 9,
                error_code: 2,
            },
            Frame::GoAway {
                last_stream_id: 3,
                error_code: 2,
            },
        ]
    }

    fn sniff(chunks: impl IntoIterator<Item = Vec<u8>>) -> (Vec<Frame>, Sniffer) {
        let mut s = Sniffer::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            s.feed(&chunk, |f| seen.push(f));
        }
        (seen, s)
    }

    #[test]
    fn finds_goaway_and_rst_stream_in_one_read() {
        let (seen, s) = sniff([conversation()]);
        assert_eq!(seen, expected());
        assert_eq!(s.first_kind(), Some(SETTINGS));
    }

    #[test]
    fn frames_split_across_reads_at_every_point() {
        let wire = conversation();
        // Every read size, including one byte at a time.
        for size in 1..=wire.len() {
            let (seen, _) = sniff(wire.chunks(size).map(<[u8]>::to_vec));
            assert_eq!(seen, expected(), "reads of {size} bytes");
        }
        // Two reads split at every offset.
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            let (seen, _) = sniff([a.to_vec(), b.to_vec()]);
            assert_eq!(seen, expected(), "split at {at}");
        }
    }

    #[test]
    fn malformed_frames_are_not_reported() {
        let mut wire = frame(GOAWAY, 0, 0, &[0, 0, 0, 1]); // too short
        wire.extend(frame(GOAWAY, 0, 3, &[0; 8])); // on a stream
        wire.extend(frame(RST_STREAM, 0, 0, &[0, 0, 0, 7])); // on stream 0
        wire.extend(frame(RST_STREAM, 0, 1, &[0, 0, 0, 7, 0])); // too long
        wire.extend(rst(11, REFUSED_STREAM));
        let (seen, _) = sniff([wire]);
        assert_eq!(
            seen,
            [Frame::Reset {
                stream_id: 11,
                error_code: REFUSED_STREAM
            }]
        );
    }

    #[test]
    fn an_http1_answer_is_not_http2() {
        let (seen, s) = sniff([b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec()]);
        assert!(seen.is_empty());
        assert_ne!(s.first_kind(), Some(SETTINGS));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x243f_6a88_85a3_08d3;
        let mut s = Sniffer::default();
        for _ in 0..2000 {
            let mut chunk = Vec::new();
            for _ in 0..(x % 50) {
                x = crate::mix::splitmix64(x);
                chunk.push(x as u8);
            }
            // Frames of every kind and size, lengths up to 2^24 - 1 included.
            chunk.extend(goaway(x as u32, 0, &[]));
            s.feed(&chunk, |_| {});
        }
        // Whatever was reported, the parser's state is consistent.
        assert!(s.head_len <= HEADER_LEN && s.payload_len <= s.want);
    }
}
