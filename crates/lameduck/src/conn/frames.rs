//! HTTP/2 frame boundaries in what the client sends, and the hold of one
//! PING acknowledgement.
//!
//! hyper's graceful shutdown of an HTTP/2 connection sends GOAWAY with the
//! highest stream id and a PING; when the PING's acknowledgement comes back,
//! it sends the final GOAWAY, whose last-stream-id is the highest stream seen
//! so far, and streams above it are refused. The PING is meant to cover the
//! streams the client opened before it saw the first GOAWAY. It does not: a
//! client that opened streams just before reading the GOAWAY writes the PING
//! acknowledgement first and those streams' HEADERS after it (h2's client
//! does, in the same packet), and they are refused although they were sent
//! in good faith. A client that does not resend them loses them.
//!
//! So, once the server has asked a connection to go away, the first PING
//! acknowledgement is taken out of the byte stream and handed on only after
//! a grace period, between two frames: whatever the client sent meanwhile is
//! seen first and counted in the final GOAWAY, as RFC 9113 §6.8 intends
//! ("after allowing time for any in-flight stream creation").
//!
//! This module only parses; `io` owns the timer.

/// Length of the client connection preface, which precedes the first frame.
pub(crate) const PREFACE_LEN: usize = 24;

const HEADER_LEN: usize = 9;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
/// A PING frame, header and its 8 bytes of opaque data.
pub(crate) const PING_FRAME_LEN: usize = HEADER_LEN + 8;

/// Follows frame boundaries through the bytes a client sends; once armed,
/// cuts the next PING acknowledgement out of them.
#[derive(Debug)]
pub(crate) struct Frames {
    /// Preface bytes still to pass.
    preface: usize,
    /// Payload bytes of the current frame still to pass (or to cut).
    payload: usize,
    /// A frame header read in part.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// How much of `header` was already handed on before arming, so cannot
    /// be held back any more.
    header_passed: usize,
    armed: bool,
    /// The PING acknowledgement being cut, then held.
    held: Vec<u8>,
    cutting: bool,
}

impl Default for Frames {
    fn default() -> Self {
        Self {
            preface: PREFACE_LEN,
            payload: 0,
            header: [0; HEADER_LEN],
            header_len: 0,
            header_passed: 0,
            armed: false,
            held: Vec::new(),
            cutting: false,
        }
    }
}

impl Frames {
    /// Follows `bytes`, which are handed on unchanged.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) {
        debug_assert!(!self.armed);
        while !bytes.is_empty() {
            let n = self.step(bytes, None);
            bytes = &bytes[n..];
        }
    }

    /// From now on, the next PING acknowledgement is held.
    pub(crate) fn arm(&mut self) {
        if !self.armed {
            self.armed = true;
            self.header_passed = self.header_len;
        }
    }

    /// Whether the next PING acknowledgement is still awaited.
    #[cfg(test)]
    fn armed(&self) -> bool {
        self.armed
    }

    /// Follows `bytes` while armed: appends to `out` what is handed on now.
    pub(crate) fn filter(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            let n = self.step(bytes, Some(out));
            bytes = &bytes[n..];
        }
    }

    /// The held acknowledgement, once it is complete and the bytes handed on
    /// so far end with a whole frame, so it can be handed on next.
    pub(crate) fn release(&mut self) -> Option<Vec<u8>> {
        let ready = !self.cutting
            && self.held.len() == PING_FRAME_LEN
            && self.payload == 0
            && self.header_len == 0;
        ready.then(|| std::mem::take(&mut self.held))
    }

    /// Whether a complete acknowledgement is being held.
    pub(crate) fn holding(&self) -> bool {
        !self.cutting && self.held.len() == PING_FRAME_LEN
    }

    /// Consumes a prefix of `bytes` (at least one byte); returns its length.
    fn step(&mut self, bytes: &[u8], mut out: Option<&mut Vec<u8>>) -> usize {
        let pass = |out: &mut Option<&mut Vec<u8>>, b: &[u8]| {
            if let Some(out) = out {
                out.extend_from_slice(b);
            }
        };
        if self.preface > 0 {
            let n = self.preface.min(bytes.len());
            self.preface -= n;
            pass(&mut out, &bytes[..n]);
            return n;
        }
        if self.payload > 0 {
            let n = self.payload.min(bytes.len());
            self.payload -= n;
            if self.cutting {
                self.held.extend_from_slice(&bytes[..n]);
                self.cutting = self.payload > 0;
            } else {
                pass(&mut out, &bytes[..n]);
            }
            return n;
        }
        let n = (HEADER_LEN - self.header_len).min(bytes.len());
        self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
        self.header_len += n;
        if out.is_none() {
            // Not armed: header bytes are handed on as they come.
            pass(&mut out, &bytes[..n]);
        }
        if self.header_len < HEADER_LEN {
            return n;
        }
        let h = self.header;
        let length = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let ping_ack = kind == PING && flags & ACK != 0 && length == 8 && stream == 0;
        let passed = std::mem::take(&mut self.header_passed);
        self.header_len = 0;
        self.payload = length;
        if out.is_some() && self.armed && ping_ack && passed == 0 {
            self.armed = false;
            self.cutting = true;
            self.held.clear();
            self.held.extend_from_slice(&h);
        } else if let Some(out) = out {
            out.extend_from_slice(&h[passed..]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ping_ack() -> Vec<u8> {
        frame(PING, ACK, 0, &[1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// The client's bytes up to the acknowledgement, the acknowledgement,
    /// then a HEADERS frame opening stream 7.
    fn conversation() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut before = PREFACE.to_vec();
        before.extend(frame(0x4, 0, 0, &[0; 6])); // SETTINGS
        before.extend(frame(0x1, 0x5, 1, b"\x82\x86\x84")); // HEADERS 1
        before.extend(frame(PING, 0, 0, &[9; 8])); // a PING, not an ack
        let after = frame(0x1, 0x5, 7, b"\x82\x86\x84");
        (before, ping_ack(), after)
    }

    #[test]
    fn observing_follows_frames_split_anywhere() {
        let (before, _, _) = conversation();
        for split in 0..=before.len() {
            let mut frames = Frames::default();
            frames.observe(&before[..split]);
            frames.observe(&before[split..]);
            assert_eq!((frames.payload, frames.header_len), (0, 0), "split {split}");
        }
    }

    #[test]
    fn armed_the_ack_is_cut_out_and_released_after_what_followed_it() {
        let (before, ack, after) = conversation();
        let mut input = before.clone();
        input.extend(&ack);
        input.extend(&after);
        // Arm at the first frame boundary after the preface, feed the rest
        // in two reads split at every position.
        let armed_at = PREFACE_LEN;
        for split in armed_at..=input.len() {
            let mut frames = Frames::default();
            frames.observe(&input[..armed_at]);
            frames.arm();
            let mut out = input[..armed_at].to_vec();
            frames.filter(&input[armed_at..split], &mut out);
            frames.filter(&input[split..], &mut out);
            let mut expected = before.clone();
            expected.extend(&after);
            assert_eq!(out, expected, "split {split}");
            assert!(frames.holding());
            assert_eq!(frames.release(), Some(ack.clone()));
            assert!(!frames.armed() && !frames.holding());
        }
    }

    #[test]
    fn only_the_first_ack_is_held_and_pings_pass() {
        let (before, ack, after) = conversation();
        let mut frames = Frames::default();
        frames.observe(&before);
        frames.arm();
        let mut out = Vec::new();
        let mut input = ack.clone();
        input.extend(&ack);
        input.extend(&after);
        frames.filter(&input, &mut out);
        let mut expected = ack.clone();
        expected.extend(&after);
        assert_eq!(out, expected);
        assert_eq!(frames.release(), Some(ack));
    }

    #[test]
    fn not_released_in_the_middle_of_a_frame() {
        let (before, ack, after) = conversation();
        let mut frames = Frames::default();
        frames.observe(&before);
        frames.arm();
        let mut out = Vec::new();
        let mut input = ack.clone();
        input.extend(&after[..5]);
        frames.filter(&input, &mut out);
        assert!(frames.holding());
        assert_eq!(frames.release(), None, "inside a frame header");
        frames.filter(&after[5..11], &mut out);
        assert_eq!(frames.release(), None, "inside a payload");
        frames.filter(&after[11..], &mut out);
        assert_eq!(out, after);
        assert_eq!(frames.release(), Some(ack));
    }

    #[test]
    fn a_header_begun_before_arming_is_never_cut() {
        let (before, ack, after) = conversation();
        let mut frames = Frames::default();
        frames.observe(&before);
        frames.observe(&ack[..4]);
        frames.arm();
        let mut out = Vec::new();
        frames.filter(&ack[4..], &mut out);
        frames.filter(&after, &mut out);
        let mut expected = ack[4..].to_vec();
        expected.extend(&after);
        assert_eq!(out, expected);
        assert!(frames.armed() && !frames.holding());
    }
}
