//! The long-lived clients' checks: every stream the rollout ended must have
//! ended cleanly and been followed by a new one; a negative control must
//! break some.

use loadgen::{Report, StreamReport};

use super::{Expect, Span, Verdict};

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
/// a rollout, and is unknown. A negative control's failed streams count
/// only inside the terminations' `windows`.
pub fn judge(report: &Report, expect: Expect, windows: &[Span], verdict: &mut Verdict) {
    let (inside, outside) = super::located(report, windows);
    for ((name, s), (failed_inside, failed_outside)) in kinds(report)
        .into_iter()
        .zip([(inside.sse, outside.sse), (inside.ws, outside.ws)])
    {
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
                let located = format!(
                    "{failed_inside} failed while a replica terminated, {failed_outside} elsewhere (not counted); {}",
                    breakdown(s)
                );
                verdict.push(
                    format!("failed {name} streams inside the terminations, as expected"),
                    failed_inside > 0,
                    if failed_inside > 0 {
                        located
                    } else {
                        format!("the suite cannot show it would catch a lost stream: {located}")
                    },
                );
            }
            // A limit of the routers, not a broken shutdown: shown, not judged.
            Expect::FailuresAnyProtocol | Expect::Forced => {}
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

    /// A replica terminating during second 5 of a 10-second run.
    const WINDOW: Span = Span {
        from_ms: 5_000,
        to_ms: 5_600,
    };

    /// Judges `sse`, whose failures happened in second `failed_at`.
    fn judged_at(sse: StreamReport, expect: Expect, failed_at: usize) -> Verdict {
        let seconds: Vec<_> = (0..10).map(|i| (i * 1000, 10, &[][..])).collect();
        let mut report = super::super::fixtures::report(&seconds, 0);
        report.timeline[failed_at].failures.sse = sse.failed;
        report.streams.sse = sse;
        let mut v = Verdict::default();
        judge(&report, expect, &[WINDOW], &mut v);
        v
    }

    fn judged(sse: StreamReport, expect: Expect) -> Verdict {
        judged_at(sse, expect, 5)
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

    /// A stream that failed before any replica terminated (a start-up
    /// error, say) is not what the negative control switched off.
    #[test]
    fn a_negative_control_s_stream_failure_outside_the_terminations_does_not_count() {
        let v = judged_at(
            streams(12, 4, 4, &[StreamFailure::ConnectRefused]),
            Expect::Failures,
            1,
        );
        assert!(!v.passed(), "{v}");
        assert!(
            v.checks[0]
                .detail
                .contains("0 failed while a replica terminated, 1 elsewhere"),
            "{v}"
        );
    }
}
