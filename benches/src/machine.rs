//! What the numbers were measured on.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::tool;

/// The machine and the tools of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores the processes may run on.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// wrk's version line.
    pub wrk: String,
    /// h2load's version line.
    pub h2load: String,
    /// The commit measured, `-dirty` when the work tree had changes.
    pub commit: String,
    /// When the run started, UTC.
    pub date: String,
}

impl Machine {
    /// Reads this machine's description; `wrk` and `h2load` are the version
    /// lines already read.
    pub fn describe(wrk: String, h2load: String) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            cpu: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: tool::first_line(&read("/proc/sys/kernel/osrelease"))
                .unwrap_or_else(|| "unknown".into()),
            rustc: tool::first_line_of("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            wrk,
            h2load,
            commit: commit(),
            date: utc_date(SystemTime::now()),
        }
    }
}

/// The first `model name` of `/proc/cpuinfo`, with its family and model
/// numbers (virtual machines often show only a generic name).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| {
        cpuinfo
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let name = field("model name")?;
    Some(match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name} (family {family}, model {model})"),
        _ => name,
    })
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// Parses `/proc/loadavg`.
pub fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

fn commit() -> String {
    let Some(head) = tool::first_line_of("git", &["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// `YYYY-MM-DD HH:MM UTC`.
pub fn utc_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_the_cpu_model() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("AMD EPYC (family 25, model 17)")
        );
        assert_eq!(
            cpu_model("model name\t: AMD EPYC 9R14\n").as_deref(),
            Some("AMD EPYC 9R14")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn reads_load_averages() {
        assert_eq!(
            parse_load_average("1.69 3.05 1.93 2/345 6789\n"),
            Some([1.69, 3.05, 1.93])
        );
        assert_eq!(parse_load_average("garbage"), None);
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2024-02-29 12:34:56 UTC, a leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc_date(leap), "2024-02-29 12:34 UTC");
        let new_year = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        assert_eq!(utc_date(new_year), "2025-01-01 00:00 UTC");
    }
}
