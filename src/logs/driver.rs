//! The log driver: shoal is its own containerd logging binary.
//!
//! containerd 1.6's shim, given a `binary:///path?k=v` stdout URI
//! (`pkg/process/io.go`, `NewBinaryIO` and `NewBinaryCmd`), starts `/path`
//! with argv `[k, v]` for each query key (Go map order, so shoal uses a
//! single key), with the env `CONTAINER_ID` and `CONTAINER_NAMESPACE` only,
//! and with fds 3 = the container's stdout, 4 = its stderr and 5 = a pipe
//! the shim blocks on until we write to it or close it. The shim keeps the
//! write ends of 3 and 4 open until the task is deleted, then closes them
//! and sends SIGTERM (SIGKILL 12 s later). So the driver reads both streams
//! to EOF, ignoring SIGTERM, which means nothing buffered is lost.
//!
//! Each line becomes one JSON [`LogLine`] in `<dir>/container.log`. When
//! that file would pass half the cap it is renamed to `container.log.1`
//! (replacing the older one), so at most the cap is kept on disk. Plain
//! threads, no async runtime: this is a tiny, short-lived process per task.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{LogLine, Stream, LOG_FILE, ROTATED_LOG_FILE};

/// The single query key of the URI, and the argv marker that tells
/// `run_if_invoked` it was started by the shim.
pub const MARKER: &str = "shoal-log-driver";

/// Longest line kept as one record; longer output is split, as docker does,
/// so a process that never writes a newline cannot grow our memory.
const MAX_LINE: usize = 16 * 1024;

/// The stdout/stderr URI for `CreateTaskRequest` that makes the shim start
/// `binary` as the log driver writing to `log_dir`. Both paths must be
/// absolute. The value is `<max_bytes>:<log_dir>`, percent-encoded.
pub fn binary_uri(binary: &Path, log_dir: &Path, max_bytes: u64) -> String {
    let value = format!("{max_bytes}:{}", log_dir.display());
    format!(
        "binary://{}?{MARKER}={}",
        percent_encode(&binary.to_string_lossy(), true),
        percent_encode(&value, false)
    )
}

/// Called first thing by `main` (before clap). When the shim started this
/// process as a log driver, runs it and exits the process; otherwise
/// returns at once and does nothing.
pub fn run_if_invoked() {
    let args = argv();
    let Some(pos) = args.iter().position(|a| a.as_os_str() == MARKER) else {
        return;
    };
    let code = match args.get(pos + 1).map(|v| parse_value(&v.to_string_lossy())) {
        Some(Ok((max, dir))) => run(&dir, max),
        Some(Err(e)) => {
            // stderr is /dev/null under the shim; this is for a human.
            eprintln!("shoal log driver: {e}");
            2
        }
        None => {
            eprintln!("shoal log driver: missing value after {MARKER}");
            2
        }
    };
    std::process::exit(code);
}

/// The process's argv. Read from /proc when std has not captured it yet,
/// which happens when this runs from a static constructor (the tests do).
fn argv() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if !args.is_empty() {
        return args;
    }
    fs::read("/proc/self/cmdline")
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| OsString::from_vec(s.to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_value(value: &str) -> Result<(u64, PathBuf), String> {
    let (max, dir) = value
        .split_once(':')
        .ok_or_else(|| format!("bad argument {value:?}: want <max_bytes>:<dir>"))?;
    let max = max
        .parse::<u64>()
        .map_err(|_| format!("bad max bytes {max:?}"))?;
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return Err(format!("log dir {dir:?} is not absolute"));
    }
    Ok((max, dir))
}

fn run(dir: &Path, max_bytes: u64) -> i32 {
    // The shim sends SIGTERM right after closing the pipes' write ends;
    // dying then would drop what is still in the pipes. EOF ends us.
    // SAFETY: installs SIG_IGN, no handler code runs.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let (Some(stdout), Some(stderr)) = (take_fd(3), take_fd(4)) else {
        eprintln!("shoal log driver: fds 3 and 4 must be the container's stdout and stderr");
        return 2;
    };
    // A writer that cannot open its file still drains the pipes, so the
    // container never blocks or dies of SIGPIPE because logging broke.
    let writer = LogWriter::open(dir, max_bytes)
        .map_err(|e| eprintln!("shoal log driver: {}: {e}", dir.display()))
        .ok();
    // Closing fd 5 tells the shim we are ready; the container starts then.
    drop(take_fd(5));

    let writer = Arc::new(Mutex::new(writer));
    let w = writer.clone();
    let err_thread = std::thread::spawn(move || pump(stderr, Stream::Stderr, &w));
    pump(stdout, Stream::Stdout, &writer);
    let _ = err_thread.join();
    if let Some(w) = writer.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = w.file.flush();
    }
    0
}

/// Takes ownership of an inherited fd if it is open.
fn take_fd(fd: RawFd) -> Option<File> {
    // SAFETY: F_GETFD only queries the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the fd is open and nothing else in this process owns it: the
    // shim passed it to us and we take each one once.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// Reads one stream to EOF, line by line, and hands each line to the
/// writer. A final line without a newline is still written.
fn pump(input: impl io::Read, stream: Stream, writer: &Mutex<Option<LogWriter>>) {
    let mut emit = |line: &[u8]| {
        if let Some(w) = writer.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            w.write_line(stream, line);
        }
    };
    split_lines(input, &mut emit);
}

/// Splits `input` into lines of at most `MAX_LINE` bytes, without their
/// newline, calling `emit` for each.
fn split_lines(input: impl io::Read, emit: &mut impl FnMut(&[u8])) {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    loop {
        let avail = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if avail.is_empty() {
            break;
        }
        let room = MAX_LINE - line.len();
        match avail.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&avail[..i]);
                reader.consume(i + 1);
                emit(&line);
                line.clear();
            }
            None => {
                let n = avail.len().min(room);
                line.extend_from_slice(&avail[..n]);
                reader.consume(n);
                if line.len() == MAX_LINE {
                    emit(&line);
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}

/// Appends JSON lines to `container.log` and rotates it.
struct LogWriter {
    dir: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
}

impl LogWriter {
    fn open(dir: &Path, max_bytes: u64) -> io::Result<LogWriter> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            file,
            size,
            max_bytes,
        })
    }

    /// Writes one record. Errors (disk full) drop the line: logging must
    /// never stop the container.
    fn write_line(&mut self, stream: Stream, line: &[u8]) {
        let record = LogLine {
            ts: timestamp(),
            stream,
            line: String::from_utf8_lossy(line).into_owned(),
        };
        let Ok(mut bytes) = serde_json::to_vec(&record) else {
            return;
        };
        bytes.push(b'\n');
        if self.max_bytes > 0
            && self.size > 0
            && self.size + bytes.len() as u64 > self.max_bytes / 2
        {
            if let Err(e) = self.rotate() {
                eprintln!("shoal log driver: rotate: {e}");
            }
        }
        if self.file.write_all(&bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        fs::rename(self.dir.join(LOG_FILE), self.dir.join(ROTATED_LOG_FILE))?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.dir.join(LOG_FILE))?;
        self.size = 0;
        Ok(())
    }
}

/// Now, as RFC 3339 UTC with nine fractional digits.
pub(crate) fn timestamp() -> String {
    const FMT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FMT)
        .unwrap_or_default()
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` in a
/// path), so Go's `url.Parse` gives back exactly the input.
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn uri_has_one_key_and_round_trips() {
        let uri = binary_uri(
            Path::new("/usr/local/bin/sh oal"),
            Path::new("/var/lib/shoal/logs/a b:c"),
            1024,
        );
        assert!(uri.starts_with("binary:///usr/local/bin/sh%20oal?shoal-log-driver="));
        let value = uri.split_once('=').unwrap().1;
        assert!(!value.contains(['&', '=', '/', ':', ' ']));
        let (max, dir) = parse_value(&percent_decode(value)).unwrap();
        assert_eq!(max, 1024);
        assert_eq!(dir, Path::new("/var/lib/shoal/logs/a b:c"));
        assert!(parse_value("12:relative").is_err());
        assert!(parse_value("x:/abs").is_err());
    }

    #[test]
    fn splits_lines_and_flushes_the_partial_last_one() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\n\ntwo\n{long}\ntail");
        let mut lines = Vec::new();
        split_lines(input.as_bytes(), &mut |l: &[u8]| lines.push(l.to_vec()));
        let lens: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![3, 0, 3, MAX_LINE, 10, 4]);
        assert_eq!(lines[5], b"tail");
    }

    #[test]
    fn writes_json_lines_and_rotates_at_half_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), 4096).unwrap();
        for i in 0..200 {
            w.write_line(Stream::Stderr, format!("line {i}").as_bytes());
        }
        let cur = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let old = fs::read_to_string(dir.path().join(ROTATED_LOG_FILE)).unwrap();
        assert!(cur.len() <= 2048 && old.len() <= 2048);
        let last: LogLine = serde_json::from_str(cur.lines().last().unwrap()).unwrap();
        assert_eq!(last.line, "line 199");
        assert_eq!(last.stream, Stream::Stderr);
        assert_eq!(last.ts.len(), "2024-01-01T00:00:00.000000000Z".len());
        assert!(time::OffsetDateTime::parse(
            &last.ts,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
    }
}
