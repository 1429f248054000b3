//! Reading a task's logs for `shoal logs`: the last N lines of both files,
//! then, with `follow`, new lines as the driver appends them.
//!
//! Follow polls (every 200 ms) rather than using inotify: it is portable,
//! cheap at this scale and survives rotation simply. A rotation is seen as
//! `container.log` having a new inode; the old handle (now
//! `container.log.1`) is read to its end before switching to the new file.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc::Sender;

use super::{log_dir, LogLine, Stream, LOG_FILE, ROTATED_LOG_FILE};

const POLL: Duration = Duration::from_millis(200);

/// Sends the task's log lines to `tx`: all of them, or the last `tail`.
/// With `follow`, keeps sending new lines until the receiver is dropped
/// (it also waits for a log file that does not exist yet). Without
/// `follow`, a task with no logs at all is `NotFound`.
pub async fn read(
    data_dir: &Path,
    task_id: &str,
    tail: Option<usize>,
    follow: bool,
    tx: Sender<LogLine>,
) -> io::Result<()> {
    let dir = log_dir(data_dir, task_id);
    let current = dir.join(LOG_FILE);

    // Open the current file before reading the rotated one: if a rotation
    // happens in between, this handle still reads on into what became
    // `.1`, and the follow loop then finds the new file.
    let mut cur = match File::open(&current).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut history = Lines::new(tail);
    match tokio::fs::read(dir.join(ROTATED_LOG_FILE)).await {
        Ok(bytes) => history.push_bytes(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut reader = Follower::default();
    if let Some(f) = cur.as_mut() {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).await?;
        reader.pos = bytes.len() as u64;
        reader.ino = f.metadata().await?.ino();
        // A partial last line stays pending until its newline arrives.
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        history.push_bytes(&bytes[..complete]);
        reader.partial = bytes[complete..].to_vec();
    }
    if cur.is_none() && history.seen == 0 && !follow {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no logs for task {task_id}"),
        ));
    }
    for line in history.lines.drain(..) {
        if tx.send(line).await.is_err() {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }

    loop {
        if let Some(f) = cur.as_mut() {
            for line in reader.read_new(f).await? {
                if tx.send(line).await.is_err() {
                    return Ok(());
                }
            }
        }
        match tokio::fs::metadata(&current).await {
            Ok(meta) if cur.is_none() || meta.ino() != reader.ino => {
                // Rotated (or created): finish the old file, then switch.
                if let Some(f) = cur.as_mut() {
                    for line in reader.read_new(f).await? {
                        if tx.send(line).await.is_err() {
                            return Ok(());
                        }
                    }
                    for line in reader.flush_partial() {
                        let _ = tx.send(line).await;
                    }
                }
                cur = Some(File::open(&current).await?);
                reader = Follower {
                    ino: meta.ino(),
                    ..Follower::default()
                };
                continue;
            }
            Ok(meta) if meta.len() < reader.pos => {
                // Truncated in place: start over.
                if let Some(f) = cur.as_mut() {
                    f.seek(io::SeekFrom::Start(0)).await?;
                }
                reader.pos = 0;
                reader.partial.clear();
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Position in the followed file and the bytes of an unfinished line.
#[derive(Default)]
struct Follower {
    ino: u64,
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    async fn read_new(&mut self, f: &mut File) -> io::Result<Vec<LogLine>> {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).await?;
        self.pos += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(split(&complete).map(parse_line).collect())
    }

    fn flush_partial(&mut self) -> Vec<LogLine> {
        let p = std::mem::take(&mut self.partial);
        split(&p).map(parse_line).collect()
    }
}

/// The last `tail` lines seen (all when `tail` is None).
struct Lines {
    tail: Option<usize>,
    lines: VecDeque<LogLine>,
    seen: usize,
}

impl Lines {
    fn new(tail: Option<usize>) -> Lines {
        Lines {
            tail,
            lines: VecDeque::new(),
            seen: 0,
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        for raw in split(bytes) {
            self.seen += 1;
            if self.tail == Some(0) {
                continue;
            }
            self.lines.push_back(parse_line(raw));
            if self.tail.is_some_and(|t| self.lines.len() > t) {
                self.lines.pop_front();
            }
        }
    }
}

/// Lines of `bytes`, without newlines; a final line without one included.
fn split(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n')
        .filter(move |_| !bytes.is_empty())
}

/// A driver line is JSON; anything else is raw output of the `file://`
/// fallback, which has neither timestamps nor streams.
fn parse_line(raw: &[u8]) -> LogLine {
    serde_json::from_slice(raw).unwrap_or_else(|_| LogLine {
        ts: String::new(),
        stream: Stream::Stdout,
        line: String::from_utf8_lossy(raw).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn json(line: &str) -> String {
        serde_json::to_string(&LogLine {
            ts: "2024-01-01T00:00:00.000000000Z".into(),
            stream: Stream::Stdout,
            line: line.into(),
        })
        .unwrap()
            + "\n"
    }

    /// The next line, within 5 s: a bug must fail the test, not hang it.
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<LogLine>) -> String {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        line.expect("a line within 5 s").expect("a line").line
    }

    #[tokio::test]
    async fn tails_across_rotation_and_follows_new_lines() {
        let data = tempfile::tempdir().unwrap();
        let dir = log_dir(data.path(), "t1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ROTATED_LOG_FILE), json("a") + &json("b")).unwrap();
        std::fs::write(dir.join(LOG_FILE), json("c") + "raw line\n").unwrap();

        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        read(data.path(), "t1", Some(3), false, tx).await.unwrap();
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(l.line);
        }
        assert_eq!(got, ["b", "c", "raw line"]);

        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let d = data.path().to_path_buf();
        let h = tokio::spawn(async move { read(&d, "t1", Some(1), true, tx).await });
        // The last old line first: then the reader is following.
        assert_eq!(next(&mut rx).await, "raw line");
        let append = |name: &str, s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.join(name))
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        append(LOG_FILE, &json("d"));
        assert_eq!(next(&mut rx).await, "d");
        // Rotate as the driver does, with a line written just before.
        append(LOG_FILE, &json("e"));
        std::fs::rename(dir.join(LOG_FILE), dir.join(ROTATED_LOG_FILE)).unwrap();
        append(LOG_FILE, &json("f"));
        assert_eq!(next(&mut rx).await, "e");
        assert_eq!(next(&mut rx).await, "f");
        drop(rx);
        h.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn missing_logs_are_not_found_unless_following() {
        let data = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let e = read(data.path(), "nope", None, false, tx)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
