//! Who reads `/metrics`, and which of them a finished shutdown waits for
//! before the process exits, so that its final figures reach Prometheus at
//! any scrape interval. A leaf: `admin` records, `shutdown` plans and waits.
//!
//! A scraper is a peer address: Prometheus scrapes a target from one address
//! at a fixed interval (an HA pair is two addresses). Its next scrape is
//! expected within twice the last interval seen, plus [`SLACK`]; one seen
//! only once is expected until the bound. One not seen within the bound is
//! not expected at all: it would not come in time.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;

/// Peers remembered at most; past it the one seen longest ago is forgotten.
const CAPACITY: usize = 64;

/// Added to twice a scraper's interval: the scheduling jitter of a loop that
/// scrapes every few hundred milliseconds, or of two scrapers behind one
/// address whose scrapes interleave.
pub(crate) const SLACK: Duration = Duration::from_secs(1);

/// Every address that read `/metrics`, and when.
#[derive(Debug)]
pub(crate) struct Scrapers {
    peers: Mutex<Vec<Peer>>,
    /// Bumped whenever a scrape read the final figures.
    finals: watch::Sender<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    address: IpAddr,
    last: Instant,
    /// Between its last two scrapes.
    interval: Option<Duration>,
    /// It has read the final figures.
    read_final: bool,
}

/// A scraper the shutdown waits for: until it reads the final figures, or
/// until `until`. `None`: it already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Awaited {
    pub(crate) address: IpAddr,
    pub(crate) until: Option<Instant>,
}

impl Default for Scrapers {
    fn default() -> Self {
        Self {
            peers: Mutex::new(Vec::new()),
            finals: watch::Sender::new(0),
        }
    }
}

impl Scrapers {
    /// Records that `address` read `/metrics` now; `final_figures` if the
    /// shutdown had ended (and set its final figures) before the read.
    pub(crate) fn record(&self, address: IpAddr, final_figures: bool) {
        let now = Instant::now();
        let address = address.to_canonical();
        {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(peer) = peers.iter_mut().find(|p| p.address == address) {
                peer.interval = Some(now.saturating_duration_since(peer.last));
                peer.last = now;
                peer.read_final |= final_figures;
            } else {
                if peers.len() == CAPACITY
                    && let Some(oldest) = (0..peers.len()).min_by_key(|&i| peers[i].last)
                {
                    peers.swap_remove(oldest);
                }
                peers.push(Peer {
                    address,
                    last: now,
                    interval: None,
                    read_final: final_figures,
                });
            }
        }
        if final_figures {
            self.finals.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The scrapers worth waiting for at `now`, at most until `now + bound`.
    pub(crate) fn plan(&self, now: Instant, bound: Duration) -> Vec<Awaited> {
        let cap = now + bound;
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut plan: Vec<Awaited> = peers
            .iter()
            .filter_map(|p| {
                if p.read_final {
                    return Some(Awaited {
                        address: p.address,
                        until: None,
                    });
                }
                let until = match p.interval {
                    Some(interval) => (p.last + interval * 2 + SLACK).min(cap),
                    None if now.saturating_duration_since(p.last) <= bound => cap,
                    None => return None,
                };
                (until > now).then_some(Awaited {
                    address: p.address,
                    until: Some(until),
                })
            })
            .collect();
        plan.sort_by_key(|a| a.address);
        plan
    }

    /// Whether `address` has read the final figures.
    pub(crate) fn read_final(&self, address: IpAddr) -> bool {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.iter().any(|p| p.address == address && p.read_final)
    }

    /// Changes whenever a scrape reads the final figures.
    pub(crate) fn finals(&self) -> watch::Receiver<u64> {
        self.finals.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::time::advance;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_scraped_nobody_is_awaited() {
        let scrapers = Scrapers::default();
        assert_eq!(scrapers.plan(Instant::now(), 65 * SECOND), []);
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_scraper_is_expected_within_twice_its_interval() {
        let scrapers = Scrapers::default();
        scrapers.record(ip(1), false);
        advance(30 * SECOND).await;
        let last = Instant::now();
        scrapers.record(ip(1), false);
        advance(10 * SECOND).await;
        let now = Instant::now();
        assert_eq!(
            scrapers.plan(now, 65 * SECOND),
            [Awaited {
                address: ip(1),
                until: Some(last + 60 * SECOND + SLACK),
            }]
        );
        // The bound caps it.
        assert_eq!(
            scrapers.plan(now, 20 * SECOND)[0].until,
            Some(now + 20 * SECOND)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scraper_seen_once_is_expected_until_the_bound_if_seen_within_it() {
        let scrapers = Scrapers::default();
        scrapers.record(ip(1), false);
        advance(40 * SECOND).await;
        scrapers.record(ip(2), false);
        advance(30 * SECOND).await;
        let now = Instant::now();
        // 10.0.0.1, seen 70 s ago, would not come back within 65 s.
        assert_eq!(
            scrapers.plan(now, 65 * SECOND),
            [Awaited {
                address: ip(2),
                until: Some(now + 65 * SECOND),
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scraper_past_its_expected_scrape_is_given_up() {
        let scrapers = Scrapers::default();
        scrapers.record(ip(1), false);
        advance(SECOND).await;
        scrapers.record(ip(1), false);
        advance(4 * SECOND).await;
        assert_eq!(scrapers.plan(Instant::now(), 65 * SECOND), []);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_read_is_remembered_and_announced() {
        let scrapers = Scrapers::default();
        let finals = scrapers.finals();
        scrapers.record(ip(1), false);
        scrapers.record(ip(2), false);
        assert!(!finals.has_changed().unwrap());
        // The same address as an IPv4-mapped IPv6 address.
        scrapers.record(
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()),
            true,
        );
        assert!(finals.has_changed().unwrap());
        assert!(scrapers.read_final(ip(2)));
        assert!(!scrapers.read_final(ip(1)));
        let plan = scrapers.plan(Instant::now(), 65 * SECOND);
        assert_eq!(
            plan[1],
            Awaited {
                address: ip(2),
                until: None
            }
        );
        assert!(plan[0].until.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_keeps_the_most_recent_peers() {
        let scrapers = Scrapers::default();
        for i in 0..=CAPACITY {
            scrapers.record(ip(u8::try_from(i).unwrap()), false);
            advance(Duration::from_millis(10)).await;
        }
        let plan = scrapers.plan(Instant::now(), 65 * SECOND);
        assert_eq!(plan.len(), CAPACITY);
        assert!(!plan.iter().any(|a| a.address == ip(0)), "the oldest stays");
    }
}
