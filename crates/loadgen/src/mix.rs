//! The request mix: which request is slow, and which gets a fresh connection.
//!
//! Each choice is a hash of the request's sequence number, so a run is
//! reproducible from its seed and no random state is shared between tasks.
//! URIs are built once, up front; a request only clones one (a reference count).

use http::Uri;
use serde::{Deserialize, Serialize};

use crate::config::{Config, MsRange};

/// Distinct `/work?ms=` values kept ready; wider ranges are sampled evenly.
const MAX_WORK_URIS: u64 = 1024;

/// Which endpoint a request hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `GET /`: answers the replica's name.
    Root,
    /// `GET /work?ms=N`: answers after N ms.
    Work,
}

impl Route {
    /// The route's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Work => "work",
        }
    }
}

/// How a request gets its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One of the pooled keep-alive connections.
    Keepalive,
    /// A connection opened for this request alone.
    Fresh,
}

impl Mode {
    /// The mode's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Keepalive => "keepalive",
            Mode::Fresh => "fresh",
        }
    }
}

/// What one scheduled request will be.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) route: Route,
    pub(crate) mode: Mode,
    pub(crate) uri: Uri,
}

/// Turns sequence numbers into plans.
#[derive(Debug)]
pub(crate) struct Mix {
    slow_key: u64,
    fresh_key: u64,
    ms_key: u64,
    slow_fraction: f64,
    fresh_fraction: f64,
    root: Uri,
    work: Vec<Uri>,
}

impl Mix {
    pub(crate) fn new(config: &Config) -> Self {
        let work = work_ms_values(config.slow_ms)
            .map(|ms| {
                Uri::from_maybe_shared(bytes::Bytes::from(format!("/work?ms={ms}")))
                    .expect("a path with a numeric query is a valid URI")
            })
            .collect();
        Self {
            slow_key: splitmix64(config.seed ^ 0x736c_6f77),
            fresh_key: splitmix64(config.seed ^ 0x6672_6573),
            ms_key: splitmix64(config.seed ^ 0x6d73),
            slow_fraction: config.slow_fraction,
            fresh_fraction: config.fresh_fraction,
            root: Uri::from_static("/"),
            work,
        }
    }

    pub(crate) fn plan(&self, seq: u64) -> Plan {
        let slow = unit(splitmix64(self.slow_key.wrapping_add(seq))) < self.slow_fraction;
        let fresh = unit(splitmix64(self.fresh_key.wrapping_add(seq))) < self.fresh_fraction;
        let (route, uri) = if slow {
            let pick = splitmix64(self.ms_key.wrapping_add(seq)) % self.work.len() as u64;
            (Route::Work, self.work[pick as usize].clone())
        } else {
            (Route::Root, self.root.clone())
        };
        let mode = if fresh { Mode::Fresh } else { Mode::Keepalive };
        Plan { route, mode, uri }
    }
}

/// The `ms` values to prepare: all of a narrow range, evenly spread over a wide one.
fn work_ms_values(range: MsRange) -> impl Iterator<Item = u64> {
    let width = range.max - range.min;
    let n = (width + 1).min(MAX_WORK_URIS);
    (0..n).map(move |i| {
        if n == 1 {
            range.min
        } else {
            range.min + (u128::from(width) * u128::from(i) / u128::from(n - 1)) as u64
        }
    })
}

/// A 64-bit mixer with full avalanche (SplitMix64's finaliser).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a hash to [0, 1) with 53 bits of precision.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(slow: f64, fresh: f64, ms: MsRange) -> Mix {
        Mix::new(&Config {
            slow_fraction: slow,
            fresh_fraction: fresh,
            slow_ms: ms,
            ..Config::new("t:1")
        })
    }

    #[test]
    fn fractions_are_met_and_independent() {
        let m = mix(0.3, 0.5, MsRange { min: 1, max: 1 });
        let n = 100_000;
        let (mut slow, mut fresh, mut both) = (0, 0, 0);
        for seq in 0..n {
            let p = m.plan(seq);
            let s = p.route == Route::Work;
            let f = p.mode == Mode::Fresh;
            slow += u64::from(s);
            fresh += u64::from(f);
            both += u64::from(s && f);
        }
        let frac = |k: u64| k as f64 / n as f64;
        assert!((frac(slow) - 0.3).abs() < 0.01, "slow {}", frac(slow));
        assert!((frac(fresh) - 0.5).abs() < 0.01, "fresh {}", frac(fresh));
        assert!((frac(both) - 0.15).abs() < 0.01, "both {}", frac(both));
    }

    #[test]
    fn extreme_fractions_are_exact() {
        let none = mix(0.0, 0.0, MsRange { min: 1, max: 1 });
        let all = mix(1.0, 1.0, MsRange { min: 1, max: 1 });
        for seq in 0..10_000 {
            let p = none.plan(seq);
            assert_eq!((p.route, p.mode), (Route::Root, Mode::Keepalive));
            assert_eq!(p.uri, "/");
            let p = all.plan(seq);
            assert_eq!((p.route, p.mode), (Route::Work, Mode::Fresh));
            assert_eq!(p.uri, "/work?ms=1");
        }
    }

    #[test]
    fn work_uris_cover_the_range() {
        let m = mix(1.0, 0.0, MsRange { min: 10, max: 20 });
        let mut seen = std::collections::BTreeSet::new();
        for seq in 0..2_000 {
            let uri = m.plan(seq).uri;
            let ms: u64 = uri
                .query()
                .unwrap()
                .strip_prefix("ms=")
                .unwrap()
                .parse()
                .unwrap();
            seen.insert(ms);
        }
        assert_eq!(seen, (10..=20).collect());
    }

    #[test]
    fn wide_ranges_are_sampled_with_both_ends() {
        let v: Vec<u64> = work_ms_values(MsRange {
            min: 0,
            max: 60_000,
        })
        .collect();
        assert_eq!(v.len(), MAX_WORK_URIS as usize);
        assert_eq!((v[0], v[v.len() - 1]), (0, 60_000));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn plans_are_reproducible_per_seed() {
        let a = mix(0.5, 0.5, MsRange { min: 1, max: 100 });
        let b = mix(0.5, 0.5, MsRange { min: 1, max: 100 });
        for seq in 0..1000 {
            let (p, q) = (a.plan(seq), b.plan(seq));
            assert_eq!((p.route, p.mode, p.uri), (q.route, q.mode, q.uri));
        }
    }
}
