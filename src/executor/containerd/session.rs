//! `shoal exec`: an interactive process in a running task, through
//! containerd (Tasks.Exec with FIFOs for its stdio, as `ctr task exec`
//! does; with a terminal, the shim gives it a pty and the FIFOs carry the
//! terminal's two directions). The FIFOs are read and written by threads
//! of their own: opening one blocks until the shim opens the other end.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, KillRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use tokio::sync::{mpsc, oneshot};

use super::exec::PROCESS_TYPE_URL;
use super::Containerd;
use crate::executor::{ExecChunk, ExecError, ExecSession, ExecSpec};

/// How long output may still come after the process exited (the shim
/// copies what was left in the pipes, then closes them).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

fn fifo(path: &Path) -> Result<(), ExecError> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| ExecError::Other(format!("mkfifo {}: {e}", path.display())))
}

/// Reads a FIFO to its end (once the shim opened and closed its side),
/// sending what comes.
fn read_fifo(path: PathBuf, tx: mpsc::Sender<ExecChunk>, wrap: fn(Bytes) -> ExecChunk) {
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::File::open(&path) else {
            return;
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(wrap(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

/// Writes what comes to a FIFO until the sender is dropped; then says so
/// (the shim keeps its side open: the process's input is closed by
/// Tasks.CloseIO, once all was written).
fn write_fifo(path: PathBuf, mut rx: mpsc::Receiver<Bytes>) -> oneshot::Receiver<()> {
    let (done, written) = oneshot::channel();
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return;
        };
        while let Some(data) = rx.blocking_recv() {
            if f.write_all(&data).is_err() {
                break;
            }
        }
        let _ = done.send(());
    });
    written
}

/// Lets the threads blocked in opening a FIFO go, when the shim never
/// opened its side (the exec failed): a non-blocking open of the other
/// end, closed at once.
fn unblock(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p);
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p);
    }
}

/// A request in the namespace whose header is `ns`.
fn in_ns<T>(ns: &tonic::metadata::AsciiMetadataValue, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("containerd-namespace", ns.clone());
    r
}

/// `uid[:gid]` as the runtime spec's user.
fn user(u: &str) -> Result<serde_json::Value, ExecError> {
    let bad = || ExecError::Other(format!("invalid user {u:?}: uid[:gid], as numbers"));
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        ),
        None => (u.parse::<u32>().map_err(|_| bad())?, 0),
    };
    Ok(serde_json::json!({"uid": uid, "gid": gid}))
}

impl Containerd {
    pub(super) async fn exec_session(
        &self,
        id: &str,
        spec: ExecSpec,
    ) -> Result<ExecSession, ExecError> {
        let mut process = self.task_process(id).await?;
        process["args"] = serde_json::json!(spec.args);
        process["terminal"] = serde_json::json!(spec.tty);
        if let Some(u) = &spec.user {
            process["user"] = user(u)?;
        }
        if let Some(w) = spec.workdir.as_ref().filter(|w| w.starts_with('/')) {
            process["cwd"] = serde_json::json!(w);
        }
        if let Some(env) = process["env"].as_array_mut() {
            env.extend(spec.env.iter().map(|e| serde_json::json!(e)));
        }
        let exec_id = format!("exec-{}", crate::types::new_id());
        let dir = self.cfg.data_dir.join("exec").join(&exec_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ExecError::Other(format!("create {}: {e}", dir.display())))?;
        let (stdin_path, out_path, err_path) =
            (dir.join("stdin"), dir.join("stdout"), dir.join("stderr"));
        fifo(&out_path)?;
        if !spec.tty {
            fifo(&err_path)?;
        }
        if spec.stdin {
            fifo(&stdin_path)?;
        }
        let (out_tx, output) = mpsc::channel(64);
        read_fifo(out_path.clone(), out_tx.clone(), ExecChunk::Stdout);
        if !spec.tty {
            read_fifo(err_path.clone(), out_tx.clone(), ExecChunk::Stderr);
        }
        drop(out_tx);
        let (stdin, mut stdin_written) = if spec.stdin {
            let (tx, rx) = mpsc::channel(64);
            (Some(tx), Some(write_fifo(stdin_path.clone(), rx)))
        } else {
            (None, None)
        };
        let path = |p: &Path, used: bool| {
            if used {
                p.display().to_string()
            } else {
                String::new()
            }
        };
        let mut tasks = TasksClient::new(self.channel.clone());
        let request = ExecProcessRequest {
            container_id: id.to_string(),
            stdin: path(&stdin_path, spec.stdin),
            stdout: path(&out_path, true),
            stderr: path(&err_path, !spec.tty),
            terminal: spec.tty,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.into(),
                value: serde_json::to_vec(&process).map_err(|e| ExecError::Other(e.to_string()))?,
            }),
            exec_id: exec_id.clone(),
        };
        let fifos = vec![stdin_path, out_path, err_path];
        let failed = |e: ExecError| {
            unblock(&fifos);
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        if let Err(s) = tasks.exec(self.req(request)).await {
            return Err(failed(self.err("exec", s)));
        }
        // Waited for before it starts, so that a quick exit is not missed.
        let mut waiter = TasksClient::new(self.channel.clone());
        let wait_req = self.req(WaitRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
        });
        let wait = tokio::spawn(async move { waiter.wait(wait_req).await });
        if let Err(s) = tasks
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await
        {
            wait.abort();
            let _ = tasks
                .delete_process(self.req(DeleteProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await;
            return Err(failed(self.err("start exec", s)));
        }
        let (resize, mut resizes) = mpsc::channel::<(u16, u16)>(8);
        let (exit_tx, exit) = oneshot::channel();
        let (cancel, mut cancelled) = oneshot::channel::<()>();
        let (channel, ns) = (self.channel.clone(), self.ns_header.clone());
        let container = id.to_string();
        if spec.tty && spec.cols > 0 && spec.rows > 0 {
            let _ = resize.try_send((spec.cols, spec.rows));
        }
        tokio::spawn(async move {
            let mut wait = wait;
            let mut tasks = TasksClient::new(channel);
            let code = loop {
                tokio::select! {
                    r = &mut wait => break match r {
                        Ok(Ok(r)) => Ok(r.into_inner().exit_status as i32),
                        Ok(Err(s)) => Err(format!("containerd wait exec: {}", s.message())),
                        Err(e) => Err(e.to_string()),
                    },
                    r = async { stdin_written.as_mut().expect("checked").await }, if stdin_written.is_some() => {
                        stdin_written = None;
                        if r.is_err() {
                            // The writer never opened the FIFO: nothing to close.
                            continue;
                        }
                        let _ = tasks
                            .close_io(in_ns(&ns, CloseIoRequest {
                                container_id: container.clone(),
                                exec_id: exec_id.clone(),
                                stdin: true,
                            }))
                            .await;
                    }
                    Some((cols, rows)) = resizes.recv() => {
                        let _ = tasks
                            .resize_pty(in_ns(&ns, ResizePtyRequest {
                                container_id: container.clone(),
                                exec_id: exec_id.clone(),
                                width: cols.into(),
                                height: rows.into(),
                            }))
                            .await;
                    }
                    _ = &mut cancelled => {
                        // The client went: the process goes too.
                        let _ = tasks
                            .kill(in_ns(&ns, KillRequest {
                                container_id: container.clone(),
                                exec_id: exec_id.clone(),
                                signal: 9,
                                all: false,
                            }))
                            .await;
                        let _ = tokio::time::timeout(DRAIN, &mut wait).await;
                        break Err("cancelled".into());
                    }
                }
            };
            let _ = tasks
                .delete_process(in_ns(
                    &ns,
                    DeleteProcessRequest {
                        container_id: container.clone(),
                        exec_id,
                    },
                ))
                .await;
            // The reader threads end with the shim's side of the FIFOs;
            // the caller reads the output to its end before the exit.
            let _ = exit_tx.send(code);
            tokio::time::sleep(DRAIN).await;
            unblock(&fifos);
            let _ = std::fs::remove_dir_all(&dir);
        });
        Ok(ExecSession {
            stdin,
            output,
            resize,
            exit,
            cancel,
        })
    }
}
