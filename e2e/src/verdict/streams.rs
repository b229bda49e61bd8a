//! The long-lived clients' checks: every stream the rollout ended must have
//! ended cleanly and been followed by a new one; a negative control must
//! break some.

use loadgen::{Report, StreamReport};

use super::{Expect, Verdict};

/// One kind of long-lived client, as the summary and the checks name it.
pub fn kinds(report: &Report) -> [(&'static str, &StreamReport); 2] {
    [
        ("SSE", &report.streams.sse),
        ("WebSocket", &report.streams.ws),
    ]
}

/// `opened, ended clean, reconnects, …, failed (by cause)`: the numbers
/// every stream check shows.
pub fn breakdown(s: &StreamReport) -> String {
    let f = &s.failures;
    let traffic = if s.messages_sent > 0 {
        format!(
            "{} messages sent, {} echoed, {} resent after a server's close",
            s.messages_sent, s.messages_echoed, s.resent_after_close
        )
    } else {
        format!("{} events", s.events)
    };
    format!(
        "{} clients, {} streams opened, {} ended cleanly by their server, {} reconnects, {} closed by the client at the end; {traffic}; {} failed (connect refused {}, connect error {}, status {}, handshake {}, reset {}, truncated {}, close code {}, unechoed {}, stalled {}, malformed {})",
        s.clients,
        s.opened,
        s.ended_clean,
        s.reconnects,
        s.closed_by_client,
        s.failed,
        f.connect_refused,
        f.connect_error,
        f.status,
        f.handshake,
        f.reset,
        f.truncated,
        f.close_code,
        f.unechoed,
        f.stalled,
        f.malformed,
    )
}

/// The checks for each kind of client the load had (none for a kind with
/// no clients). A kind whose streams no server ended proves nothing about
/// a rollout, and is unknown.
pub fn judge(report: &Report, expect: Expect, verdict: &mut Verdict) {
    for (name, s) in kinds(report) {
        if s.clients == 0 {
            continue;
        }
        match expect {
            Expect::NoFailures => {
                let (passed, detail) = if s.opened == 0 {
                    (
                        false,
                        format!("unknown: no {name} stream was opened; {}", breakdown(s)),
                    )
                } else if s.failed == 0 && (s.ended_clean == 0 || s.reconnects == 0) {
                    let why = "no server ended a stream and no client reconnected, so the rollout never reached them";
                    (false, format!("unknown: {why}; {}", breakdown(s)))
                } else {
                    (s.failed == 0, breakdown(s))
                };
                verdict.push(format!("no failed {name} stream"), passed, detail);
            }
            Expect::Failures => {
                verdict.push(
                    format!("failed {name} streams, as expected"),
                    s.failed > 0,
                    if s.failed > 0 {
                        breakdown(s)
                    } else {
                        format!(
                            "none failed: the suite cannot show it would catch a lost stream; {}",
                            breakdown(s)
                        )
                    },
                );
            }
            // A limit of the routers, not a broken shutdown: shown, not judged.
            Expect::FailuresAnyProtocol => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use loadgen::StreamFailure;

    use super::*;

    fn streams(
        opened: u64,
        ended_clean: u64,
        reconnects: u64,
        failed: &[StreamFailure],
    ) -> StreamReport {
        let mut s = StreamReport {
            clients: 4,
            opened,
            ended_clean,
            reconnects,
            closed_by_client: opened - ended_clean,
            ..StreamReport::default()
        };
        for cause in failed {
            s.failures.add(*cause);
            s.failed += 1;
        }
        s
    }

    fn judged(sse: StreamReport, expect: Expect) -> Verdict {
        let mut report = super::super::fixtures::report(&[(0, 10, &[])], 0);
        report.streams.sse = sse;
        let mut v = Verdict::default();
        judge(&report, expect, &mut v);
        v
    }

    #[test]
    fn clean_ends_and_reconnects_pass() {
        let v = judged(streams(12, 8, 8, &[]), Expect::NoFailures);
        assert!(v.passed(), "{v}");
        // Only the kinds that had clients are judged.
        assert_eq!(v.checks.len(), 1);
    }

    #[test]
    fn a_failed_stream_fails() {
        let v = judged(
            streams(12, 8, 8, &[StreamFailure::Truncated]),
            Expect::NoFailures,
        );
        assert!(!v.passed(), "{v}");
        assert!(v.checks[0].detail.contains("truncated 1"), "{v}");
    }

    #[test]
    fn streams_no_server_ended_are_unknown() {
        for s in [streams(0, 0, 0, &[]), streams(4, 0, 0, &[])] {
            let v = judged(s, Expect::NoFailures);
            assert!(!v.passed(), "{v}");
            assert!(v.checks[0].detail.starts_with("unknown"), "{v}");
        }
    }

    #[test]
    fn a_negative_control_must_break_streams() {
        let v = judged(streams(12, 8, 8, &[]), Expect::Failures);
        assert!(!v.passed(), "{v}");
        let v = judged(streams(12, 4, 4, &[StreamFailure::Reset]), Expect::Failures);
        assert!(v.passed(), "{v}");
    }
}
