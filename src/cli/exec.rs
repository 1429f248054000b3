//! `shoal exec [-i] [-t] TASK|SERVICE.SLOT CMD…`: a process in a running
//! task, on whichever node runs it, through the daemon (an upgraded
//! connection of `crate::api::exec` frames). With `-t`, this terminal is
//! put in raw mode and its size follows along; the command's exit code
//! is `exec`'s.

use std::io::Write;
use std::os::fd::AsFd;

use clap::Args;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use super::{parse, Client};
use crate::rpc::messages::{ExecIn, ExecOut, ExecStart};

#[derive(Args)]
pub struct ExecArgs {
    /// Send this terminal's input to the process.
    #[arg(short, long)]
    interactive: bool,
    /// Give the process a terminal (its output is then one stream).
    #[arg(short, long)]
    tty: bool,
    /// Run as uid[:gid] (default: the task's user).
    #[arg(short, long)]
    user: Option<String>,
    /// The working directory (default: the task's).
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set an environment variable KEY=VALUE (repeatable).
    #[arg(short, long, value_parser = parse::key_value)]
    env: Vec<(String, String)>,
    /// The task: its id (or a prefix of it), or SERVICE.SLOT.
    task: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// This terminal's size, if stdin is one.
fn size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct given; the fd
    // is this process's stdin.
    let r = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Puts the terminal back as it was when dropped.
struct Raw(Option<nix::sys::termios::Termios>);

impl Raw {
    fn enter(tty: bool) -> Raw {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        if !tty {
            return Raw(None);
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Raw(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        Raw(Some(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

pub async fn run(client: &Client, a: ExecArgs) -> anyhow::Result<()> {
    let io = client
        .upgrade("/v1/exec", crate::api::exec::PROTOCOL)
        .await?;
    let (mut sink, mut frames) = Framed::new(io, crate::api::exec::codec()).split();
    let (cols, rows) = size().unwrap_or((0, 0));
    let start = ExecStart {
        task: a.task,
        args: a.command,
        tty: a.tty,
        stdin: a.interactive,
        user: a.user,
        workdir: a.workdir,
        env: a.env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cols,
        rows,
        who: String::new(),
    };
    let frame = |m: &ExecIn| bytes::Bytes::from(crate::format::encode(m));
    sink.send(frame(&ExecIn::Start(start))).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ExecIn>(64);
    if a.interactive {
        // A thread of its own: a read of stdin blocks, and the process
        // exits with the command's code whatever it is blocked in.
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(ExecIn::StdinEnd);
                        return;
                    }
                    Ok(n) => {
                        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if tx.blocking_send(ExecIn::Stdin(data)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    if a.tty {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut winch) = signal(SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((cols, rows)) = size() {
                    if tx.send(ExecIn::Resize { cols, rows }).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let raw = Raw::enter(a.tty && size().is_some());
    let code = loop {
        tokio::select! {
            Some(m) = rx.recv() => {
                sink.send(frame(&m)).await?;
            }
            f = frames.next() => {
                let Some(f) = f else {
                    drop(raw);
                    anyhow::bail!("the daemon closed the exec before the command's exit code");
                };
                match crate::format::decode::<ExecOut>(&f?)? {
                    ExecOut::Stdout(b) => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&b)?;
                        out.flush()?;
                    }
                    ExecOut::Stderr(b) => {
                        let mut err = std::io::stderr().lock();
                        err.write_all(&b)?;
                        err.flush()?;
                    }
                    ExecOut::Exit(code) => break code,
                    ExecOut::Error(e) => {
                        drop(raw);
                        anyhow::bail!("{e}");
                    }
                }
            }
        }
    };
    drop(raw);
    std::process::exit(code);
}
