//! The request mix: which request is slow, which is a `POST`, and how it
//! gets its connection (keep-alive pool, fresh connection, or HTTP/2).
//!
//! Each choice is a hash of the request's sequence number, so a run is
//! reproducible from its seed and no random state is shared between tasks.
//! URIs are built once, up front; a request only clones one (a reference
//! count). A `POST`'s body is a slice of one static pattern, its offset and
//! length drawn per request: bodies vary and cost no allocation.

use bytes::Bytes;
use http::Uri;
use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, MIX_EPSILON, MsRange};

/// Distinct `/work?ms=` values kept ready; wider ranges are sampled evenly.
const MAX_WORK_URIS: u64 = 1024;

/// Shortest `POST` body, in bytes.
pub const MIN_POST_BODY: usize = 128;

/// Longest `POST` body, in bytes.
pub const MAX_POST_BODY: usize = MIN_POST_BODY + BODY_LENGTHS - 1;

/// Distinct body lengths, and distinct offsets into the pattern.
const BODY_LENGTHS: usize = 512;
const BODY_OFFSETS: usize = 256;

/// What `POST` bodies are cut from: printable bytes of no short period.
static PATTERN: [u8; BODY_OFFSETS + MAX_POST_BODY] = pattern();

const fn pattern<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let mut state: u64 = 0x6c61_6d65_6475_636b;
    let mut i = 0;
    while i < N {
        // A 64-bit LCG (Knuth's MMIX constants), its high bits taken.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes[i] = b'!' + ((state >> 33) % 94) as u8;
        i += 1;
    }
    bytes
}

/// Which endpoint a request hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `GET /`: answers the replica's name.
    Root,
    /// `GET /work?ms=N`: answers after N ms.
    Work,
    /// `POST /` with a body: answers with the same bytes.
    Echo,
}

impl Route {
    /// The route's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Work => "work",
            Route::Echo => "echo",
        }
    }

    /// The request method of this route.
    pub fn method(self) -> Method {
        match self {
            Route::Root | Route::Work => Method::Get,
            Route::Echo => Method::Post,
        }
    }
}

/// The request methods sent: `GET` is idempotent, so a proxy may retry it
/// behind the client's back; `POST` is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `GET /` and `GET /work`.
    Get,
    /// `POST /`.
    Post,
}

impl Method {
    /// The method's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
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
    /// A stream on one of the pooled HTTP/2 connections.
    Http2,
}

impl Mode {
    /// The mode's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Keepalive => "keepalive",
            Mode::Fresh => "fresh",
            Mode::Http2 => "http2",
        }
    }
}

/// What one scheduled request will be.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) route: Route,
    pub(crate) mode: Mode,
    /// Origin form (`/work?ms=5`) for HTTP/1.1; absolute
    /// (`http://target/work?ms=5`) for HTTP/2, whose `:authority` and
    /// `:scheme` come from it.
    pub(crate) uri: Uri,
    /// The body of a `POST` (which must come back), empty otherwise.
    pub(crate) body: Bytes,
}

/// The URIs of one protocol: `/` and the prepared `/work?ms=` values.
#[derive(Debug)]
struct Uris {
    root: Uri,
    work: Vec<Uri>,
}

impl Uris {
    fn new(ms: &[u64], authority: Option<&Authority>) -> Result<Self, ConfigError> {
        let uri = |path: String| {
            let built = match authority {
                Some(a) => Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(a.clone())
                    .path_and_query(path)
                    .build(),
                None => Uri::from_maybe_shared(bytes::Bytes::from(path)).map_err(Into::into),
            };
            built.map_err(|e| ConfigError(format!("cannot build a request URI: {e}")))
        };
        Ok(Self {
            root: uri("/".into())?,
            work: ms
                .iter()
                .map(|ms| uri(format!("/work?ms={ms}")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Turns sequence numbers into plans.
#[derive(Debug)]
pub(crate) struct Mix {
    slow_key: u64,
    mode_key: u64,
    ms_key: u64,
    body_key: u64,
    slow_fraction: f64,
    /// A route draw at or above `slow_fraction` and below this is a POST.
    post_below: f64,
    /// A draw below this is fresh...
    fresh_below: f64,
    /// ...else below this HTTP/2, else keep-alive.
    h2_below: f64,
    http1: Uris,
    http2: Uris,
}

impl Mix {
    /// Fails when HTTP/2 is used and the target is not a valid authority.
    pub(crate) fn new(config: &Config) -> Result<Self, ConfigError> {
        let ms: Vec<u64> = work_ms_values(config.slow_ms).collect();
        let authority = if config.h2_fraction > 0.0 {
            let a = config.target.parse::<Authority>().map_err(|e| {
                ConfigError(format!(
                    "target {:?} is not a valid host:port: {e}",
                    config.target
                ))
            })?;
            Some(a)
        } else {
            None
        };
        let http1 = Uris::new(&ms, None)?;
        let http2 = match &authority {
            Some(a) => Uris::new(&ms, Some(a))?,
            // Never planned; the same URIs keep `plan` free of special cases.
            None => Uris::new(&ms, None)?,
        };
        // Keep-alive takes what the other two leave. When that is nothing,
        // the last mode with a share takes every draw above the others,
        // whatever the rounding of the sum: a mode without a share (and so
        // without workers) is never planned.
        let (fresh, h2) = (config.fresh_fraction, config.h2_fraction);
        let no_keepalive = config.keepalive_fraction() == 0.0;
        let fresh_below = if no_keepalive && h2 == 0.0 {
            f64::INFINITY
        } else {
            fresh
        };
        let h2_below = if no_keepalive && h2 > 0.0 {
            f64::INFINITY
        } else {
            fresh + h2
        };
        Ok(Self {
            slow_key: splitmix64(config.seed ^ 0x736c_6f77),
            // The key of the former fresh-or-not draw: runs without HTTP/2
            // plan exactly as before.
            mode_key: splitmix64(config.seed ^ 0x6672_6573),
            ms_key: splitmix64(config.seed ^ 0x6d73),
            body_key: splitmix64(config.seed ^ 0x706f_7374),
            slow_fraction: config.slow_fraction,
            // Fractions that add up to 1 up to rounding leave no `GET /`.
            post_below: if config.slow_fraction + config.post_fraction >= 1.0 - MIX_EPSILON {
                f64::INFINITY
            } else {
                config.slow_fraction + config.post_fraction
            },
            fresh_below,
            h2_below,
            http1,
            http2,
        })
    }

    /// `GET /` over HTTP/2 (absolute), for the probe.
    pub(crate) fn h2_root(&self) -> &Uri {
        &self.http2.root
    }

    pub(crate) fn plan(&self, seq: u64) -> Plan {
        // One draw for the route: the slow requests are the same with or
        // without POSTs, which take from the `GET /` share.
        let route_draw = unit(splitmix64(self.slow_key.wrapping_add(seq)));
        let draw = unit(splitmix64(self.mode_key.wrapping_add(seq)));
        let mode = if draw < self.fresh_below {
            Mode::Fresh
        } else if draw < self.h2_below {
            Mode::Http2
        } else {
            Mode::Keepalive
        };
        let uris = match mode {
            Mode::Http2 => &self.http2,
            Mode::Keepalive | Mode::Fresh => &self.http1,
        };
        if route_draw < self.slow_fraction {
            let pick = splitmix64(self.ms_key.wrapping_add(seq)) % uris.work.len() as u64;
            return Plan {
                route: Route::Work,
                mode,
                uri: uris.work[pick as usize].clone(),
                body: Bytes::new(),
            };
        }
        let (route, body) = if route_draw < self.post_below {
            (Route::Echo, self.body(seq))
        } else {
            (Route::Root, Bytes::new())
        };
        Plan {
            route,
            mode,
            uri: uris.root.clone(),
            body,
        }
    }

    /// Request `seq`'s `POST` body: a slice of the pattern.
    fn body(&self, seq: u64) -> Bytes {
        let h = splitmix64(self.body_key.wrapping_add(seq));
        let offset = (h % BODY_OFFSETS as u64) as usize;
        let len = MIN_POST_BODY + ((h >> 32) % BODY_LENGTHS as u64) as usize;
        Bytes::from_static(&PATTERN[offset..offset + len])
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
        mix3(slow, fresh, 0.0, ms)
    }

    fn mix3(slow: f64, fresh: f64, h2: f64, ms: MsRange) -> Mix {
        Mix::new(&Config {
            slow_fraction: slow,
            fresh_fraction: fresh,
            h2_fraction: h2,
            slow_ms: ms,
            post_fraction: 0.0,
            ..Config::new("t:1")
        })
        .unwrap()
    }

    fn with_posts(slow: f64, post: f64, fresh: f64, h2: f64) -> Mix {
        Mix::new(&Config {
            slow_fraction: slow,
            post_fraction: post,
            fresh_fraction: fresh,
            h2_fraction: h2,
            slow_ms: MsRange { min: 1, max: 1 },
            ..Config::new("t:1")
        })
        .unwrap()
    }

    #[test]
    fn posts_take_their_share_on_every_protocol_with_varying_bodies() {
        let m = with_posts(0.2, 0.2, 0.25, 0.25);
        let n = 100_000;
        let mut posts = [0u64; 3];
        let mut lengths = std::collections::BTreeSet::new();
        let mut heads = std::collections::BTreeSet::new();
        for seq in 0..n {
            let p = m.plan(seq);
            if p.route != Route::Echo {
                assert!(p.body.is_empty(), "{p:?}");
                continue;
            }
            assert_eq!(p.route.method(), Method::Post);
            assert_eq!(p.uri.path(), "/");
            assert!((MIN_POST_BODY..=MAX_POST_BODY).contains(&p.body.len()));
            lengths.insert(p.body.len());
            heads.insert(p.body.slice(..8));
            posts[match p.mode {
                Mode::Keepalive => 0,
                Mode::Fresh => 1,
                Mode::Http2 => 2,
            }] += 1;
        }
        let frac = |k: u64| k as f64 / n as f64;
        let all: u64 = posts.iter().sum();
        assert!((frac(all) - 0.2).abs() < 0.01, "{posts:?}");
        for (got, share) in posts.iter().zip([0.5, 0.25, 0.25]) {
            assert!((frac(*got) - 0.2 * share).abs() < 0.01, "{posts:?}");
        }
        // Bodies differ in length and content.
        assert_eq!(lengths.len(), BODY_LENGTHS);
        assert!(heads.len() > 200, "{}", heads.len());
        // The slow requests are the same with or without POSTs.
        let without = with_posts(0.2, 0.0, 0.25, 0.25);
        for seq in 0..10_000 {
            let (a, b) = (m.plan(seq), without.plan(seq));
            assert_eq!(a.route == Route::Work, b.route == Route::Work);
            assert_eq!(a.mode, b.mode);
        }
    }

    #[test]
    fn slow_and_post_fractions_that_add_up_to_one_leave_no_get_root() {
        for (slow, post) in [(0.7, 0.3), (0.0, 1.0), (0.1, 0.9)] {
            let m = with_posts(slow, post, 0.0, 0.0);
            for seq in 0..20_000 {
                assert_ne!(m.plan(seq).route, Route::Root, "{slow} + {post}");
            }
        }
        let m = with_posts(0.0, 0.0, 0.0, 0.0);
        assert!((0..1000).all(|seq| m.plan(seq).route == Route::Root));
    }

    #[test]
    fn the_pattern_has_no_short_period() {
        for period in 1..=64 {
            assert!(
                PATTERN.iter().zip(&PATTERN[period..]).any(|(a, b)| a != b),
                "{period}"
            );
        }
        assert!(PATTERN.iter().all(|b| b.is_ascii_graphic()));
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
    fn three_way_split_is_met() {
        let m = mix3(0.2, 0.25, 0.25, MsRange { min: 1, max: 3 });
        let n = 100_000;
        let mut counts = [0u64; 3];
        for seq in 0..n {
            let p = m.plan(seq);
            let i = match p.mode {
                Mode::Keepalive => 0,
                Mode::Fresh => 1,
                Mode::Http2 => 2,
            };
            counts[i] += 1;
            let absolute = p.uri.scheme().is_some();
            assert_eq!(absolute, p.mode == Mode::Http2, "{:?} {}", p.mode, p.uri);
            if absolute {
                assert_eq!(p.uri.authority().unwrap(), "t:1");
            }
        }
        let frac = |k: u64| k as f64 / n as f64;
        assert!((frac(counts[0]) - 0.5).abs() < 0.01, "{counts:?}");
        assert!((frac(counts[1]) - 0.25).abs() < 0.01, "{counts:?}");
        assert!((frac(counts[2]) - 0.25).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn adding_http2_keeps_the_fresh_choice() {
        // The fresh share is drawn the same way with or without HTTP/2.
        let without = mix(0.3, 0.25, MsRange { min: 1, max: 9 });
        let with = mix3(0.3, 0.25, 0.5, MsRange { min: 1, max: 9 });
        for seq in 0..10_000 {
            let (a, b) = (without.plan(seq), with.plan(seq));
            assert_eq!(a.route, b.route);
            assert_eq!(a.mode == Mode::Fresh, b.mode == Mode::Fresh);
        }
    }

    #[test]
    fn http2_only_and_rounded_sums_leave_no_keepalive() {
        for (fresh, h2) in [(0.0, 1.0), (0.7, 0.3), (0.1, 0.9)] {
            let m = mix3(0.5, fresh, h2, MsRange { min: 1, max: 1 });
            for seq in 0..20_000 {
                assert_ne!(m.plan(seq).mode, Mode::Keepalive, "{fresh} + {h2}");
            }
        }
        // A mode without a share is never planned, even where the fractions
        // fall short of 1 by a rounding error.
        let m = mix3(0.5, 1.0 - 1e-12, 0.0, MsRange { min: 1, max: 1 });
        assert_eq!((m.fresh_below, m.h2_below), (f64::INFINITY, 1.0 - 1e-12));
        let m = mix3(0.5, 0.5, 0.5 - 1e-12, MsRange { min: 1, max: 1 });
        assert_eq!((m.fresh_below, m.h2_below), (0.5, f64::INFINITY));
        let m = mix3(0.5, 0.25, 0.0, MsRange { min: 1, max: 1 });
        assert_eq!((m.fresh_below, m.h2_below), (0.25, 0.25));
        let m = mix3(1.0, 0.0, 1.0, MsRange { min: 4, max: 4 });
        assert_eq!(m.plan(7).uri, "http://t:1/work?ms=4");
    }

    #[test]
    fn http2_needs_a_valid_authority() {
        let bad = Config {
            h2_fraction: 0.5,
            ..Config::new("not a host:1")
        };
        assert!(Mix::new(&bad).is_err());
        // HTTP/1.1 sends the target as a Host header only.
        let http1 = Config {
            h2_fraction: 0.0,
            ..bad
        };
        assert!(Mix::new(&http1).is_ok());
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
        let c = mix3(0.5, 0.2, 0.3, MsRange { min: 1, max: 100 });
        let d = mix3(0.5, 0.2, 0.3, MsRange { min: 1, max: 100 });
        let (e, f) = (
            with_posts(0.2, 0.5, 0.0, 0.0),
            with_posts(0.2, 0.5, 0.0, 0.0),
        );
        for seq in 0..1000 {
            let (p, q) = (c.plan(seq), d.plan(seq));
            assert_eq!((p.route, p.mode, p.uri), (q.route, q.mode, q.uri));
            let (p, q) = (e.plan(seq), f.plan(seq));
            assert_eq!((p.route, p.body), (q.route, q.body));
            let (p, q) = (a.plan(seq), b.plan(seq));
            assert_eq!((p.route, p.mode, p.uri), (q.route, q.mode, q.uri));
        }
    }
}
