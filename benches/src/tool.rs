//! Running the external tools the benchmarks drive (wrk, h2load, loadgen,
//! valgrind, git, rustc): their output, or a one-line reason they failed.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Runs `command` to the end with no stdin and returns its stdout; a tool
/// that cannot start or exits non-zero is an error that quotes its output.
pub fn stdout_of(command: &mut Command) -> anyhow::Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {} {}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// The first line `program args` prints, when it succeeds and that line is
/// not blank: a version string, a commit.
pub fn first_line_of(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| first_line(&String::from_utf8_lossy(&output.stdout)))
        .flatten()
}

/// The first line of `text`, trimmed, if it is not empty.
pub fn first_line(text: &str) -> Option<String> {
    text.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_of_returns_output_or_quotes_the_failure() {
        let out = stdout_of(Command::new("sh").args(["-c", "echo hello"])).unwrap();
        assert_eq!(out, "hello\n");
        let error = stdout_of(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "sh failed (exit status: 3): out err");
        assert!(stdout_of(&mut Command::new("/nonexistent/tool")).is_err());
    }

    #[test]
    fn first_line_of_needs_success_and_text() {
        assert_eq!(
            first_line_of("sh", &["-c", "echo ' v1 '; echo two"]),
            Some("v1".into())
        );
        assert_eq!(first_line_of("sh", &["-c", "echo v1; exit 1"]), None);
        assert_eq!(first_line_of("sh", &["-c", "true"]), None);
        assert_eq!(first_line_of("/nonexistent/tool", &[]), None);
    }
}
