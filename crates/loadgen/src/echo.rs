//! Checks that the answer to a `POST /` is its own body, as the bytes come
//! in: nothing is copied, and the first difference is named.

/// The body sent, and how much of the answer matched it so far.
#[derive(Debug)]
pub(crate) struct EchoCheck<'a> {
    sent: &'a [u8],
    matched: usize,
    wrong: Option<String>,
}

impl<'a> EchoCheck<'a> {
    pub(crate) fn new(sent: &'a [u8]) -> Self {
        Self {
            sent,
            matched: 0,
            wrong: None,
        }
    }

    /// The next bytes of the answer.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.wrong.is_some() {
            return;
        }
        let expected = &self.sent[self.matched..];
        let common = chunk.len().min(expected.len());
        if let Some(i) = (0..common).find(|&i| chunk[i] != expected[i]) {
            self.wrong = Some(format!(
                "the echo differs from the {} bytes sent at byte {}",
                self.sent.len(),
                self.matched + i
            ));
        } else if chunk.len() > expected.len() {
            self.wrong = Some(format!(
                "the echo is longer than the {} bytes sent",
                self.sent.len()
            ));
        } else {
            self.matched += chunk.len();
        }
    }

    /// What is wrong with the whole answer, if anything.
    pub(crate) fn finish(self) -> Option<String> {
        self.wrong.or_else(|| {
            (self.matched < self.sent.len()).then(|| {
                format!(
                    "the echo has {} of the {} bytes sent",
                    self.matched,
                    self.sent.len()
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sent: &[u8], chunks: &[&[u8]]) -> Option<String> {
        let mut echo = EchoCheck::new(sent);
        for chunk in chunks {
            echo.feed(chunk);
        }
        echo.finish()
    }

    #[test]
    fn the_same_bytes_in_any_chunks_pass() {
        assert_eq!(check(b"hello", &[b"hello"]), None);
        assert_eq!(check(b"hello", &[b"he", b"", b"llo"]), None);
        assert_eq!(check(b"", &[]), None);
    }

    #[test]
    fn every_difference_is_named() {
        assert_eq!(
            check(b"hello", &[b"he", b"lp!"]).as_deref(),
            Some("the echo differs from the 5 bytes sent at byte 3")
        );
        assert_eq!(
            check(b"hello", &[b"hell"]).as_deref(),
            Some("the echo has 4 of the 5 bytes sent")
        );
        assert_eq!(
            check(b"hello", &[b"hello", b"!"]).as_deref(),
            Some("the echo is longer than the 5 bytes sent")
        );
        assert_eq!(
            check(b"hello", &[b"replica-a"]).as_deref(),
            Some("the echo differs from the 5 bytes sent at byte 0")
        );
        assert!(check(b"abc", &[]).is_some());
    }
}
