//! A scraper of a server's `/metrics`, as Prometheus is one: a scrape every
//! interval on a fixed schedule, over a keep-alive connection from one
//! address, until the server is gone.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::metrics::Metrics;

/// Longest a scraper runs, whatever happens.
const LIMIT: Duration = Duration::from_secs(120);

/// One scrape that was answered.
#[derive(Debug)]
pub struct Scrape {
    /// When the answer had been read.
    pub at: Instant,
    pub metrics: Metrics,
}

/// A scraper running on its own thread.
pub struct ScrapeLoop {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    scrapes: Arc<Mutex<Vec<Scrape>>>,
    handle: JoinHandle<()>,
}

impl ScrapeLoop {
    /// Scrapes `admin`'s `/metrics` from the local address `from` every
    /// `every` (the first at once) until [`ScrapeLoop::stop`], until the
    /// server refuses connections, or for two minutes at most.
    pub fn start(admin: SocketAddr, from: IpAddr, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let scrapes = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, answered, scrapes) = (
                Arc::clone(&stop),
                Arc::clone(&answered),
                Arc::clone(&scrapes),
            );
            thread::spawn(move || {
                let start = Instant::now();
                let mut conn: Option<Conn> = None;
                for tick in 0u32.. {
                    let at = start + every * tick;
                    if at > start + LIMIT {
                        return;
                    }
                    thread::sleep(at.saturating_duration_since(Instant::now()));
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if conn.is_none() {
                        match Conn::connect_from(admin, from) {
                            Ok(c) => conn = Some(c),
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                            Err(_) => continue,
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    match c.get("/metrics") {
                        Ok(response) if response.status == 200 => {
                            let metrics = Metrics(String::from_utf8_lossy(&response.body).into());
                            let scrape = Scrape {
                                at: Instant::now(),
                                metrics,
                            };
                            scrapes
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(scrape);
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // A closed keep-alive connection: a new one next time.
                        _ => conn = None,
                    }
                }
            })
        };
        Self {
            stop,
            answered,
            scrapes,
            handle,
        }
    }

    /// How many scrapes were answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits until one more scrape than now has been answered (at most
    /// `patience`); returns whether it was.
    pub fn wait_for_next(&self, patience: Duration) -> bool {
        let seen = self.answered();
        let deadline = Instant::now() + patience;
        while self.answered() == seen {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Stops scraping; returns every answered scrape.
    pub fn stop(self) -> Vec<Scrape> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits until the scraper ends on its own (the server went away);
    /// returns every answered scrape.
    pub fn join(self) -> Vec<Scrape> {
        self.handle.join().expect("the scraper panicked");
        let mut scrapes = self.scrapes.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *scrapes)
    }
}
