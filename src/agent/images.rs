//! The node's images as a whole: which ones are in use, image garbage
//! collection between the cluster's water marks (SD cards fill up),
//! `image prune`, and `image rm`, which refuses an image in use.
//!
//! An image is in use when a container of the node's namespace was made
//! from it (a stopped task's container is kept for its logs, and still
//! needs its snapshot), or when a task assigned to run here names it: its
//! container may not exist yet, and the image was pulled for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::executor::{ExecError, ImageStore};
use crate::shutdown::Shutdown;
use crate::types::{
    normalize_image, now_ms, Assignments, DiskUsage, ImageGc, ImageInfo, ImagesOnNode, NodeImage,
    TaskState,
};

/// How often the node looks at its image disk (and at once after a pull).
const GC_PERIOD: Duration = Duration::from_secs(30);

/// What `image prune` and a collection removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub names: Vec<String>,
    /// How much the image disk shrank (other writers may blur it).
    pub freed_bytes: u64,
}

/// Why `image rm` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("no image {0} on this node")]
    NotFound(String),
    #[error("image {0} is in use by a task on this node")]
    InUse(String),
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// When this daemon first saw an image (by digest), and last saw it in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub first_ms: i64,
    pub last_used_ms: i64,
}

pub struct ImageKeeper {
    images: Arc<dyn ImageStore>,
    /// The tasks assigned to this node, once the agent runs.
    /// std Mutex: never held across .await.
    assignments: Mutex<Option<watch::Receiver<Assignments>>>,
    policy: watch::Sender<ImageGc>,
    /// In memory only: after a restart every image counts as just seen,
    /// so nothing is collected for the minimum age. std Mutex.
    seen: Mutex<HashMap<String, Seen>>,
    /// One collection, prune or removal at a time, so that a removal never
    /// races the in-use check of another.
    busy: tokio::sync::Mutex<()>,
    /// Wakes the collector after a pull.
    poke: Notify,
    /// Set once the log said the disk is full of images in use, so that
    /// it says it once, not every period.
    stuck: std::sync::atomic::AtomicBool,
    /// Told when images were removed (the node's description and its blob
    /// report are then out of date).
    removed: Notify,
}

impl ImageKeeper {
    pub fn new(images: Arc<dyn ImageStore>) -> Arc<ImageKeeper> {
        Arc::new(ImageKeeper {
            images,
            assignments: Mutex::new(None),
            policy: watch::Sender::new(ImageGc::default()),
            seen: Mutex::new(HashMap::new()),
            busy: tokio::sync::Mutex::new(()),
            poke: Notify::new(),
            removed: Notify::new(),
            stuck: Default::default(),
        })
    }

    /// The agent's assignments, whose images are in use.
    pub fn attach(&self, assignments: watch::Receiver<Assignments>) {
        *self.assignments.lock().unwrap_or_else(|e| e.into_inner()) = Some(assignments);
    }

    /// The cluster's policy, as the session brings it.
    pub fn set_policy(&self, policy: ImageGc) {
        self.policy.send_if_modified(|p| {
            let changed = *p != policy;
            *p = policy;
            changed
        });
    }

    /// An image arrived: look at the disk now.
    pub fn pulled(&self) {
        self.poke.notify_one();
    }

    /// Waits until images were removed.
    pub async fn images_removed(&self) {
        self.removed.notified().await
    }

    /// The images here, whether each is in use, and the image disk.
    pub async fn list(&self) -> Result<(Vec<NodeImage>, Option<DiskUsage>), ExecError> {
        let (images, in_use) = self.survey().await?;
        let disk = self.images.image_disk().await.ok();
        let list = images
            .into_iter()
            .map(|info| NodeImage {
                in_use: in_use.contains(&info.digest),
                info,
            })
            .collect();
        Ok((list, disk))
    }

    /// `image rm` (`remove`), or `image prune`, or neither; then the list.
    pub async fn apply(
        &self,
        remove: Option<&str>,
        prune: bool,
    ) -> Result<ImagesOnNode, RemoveError> {
        let mut removed = Removed::default();
        if let Some(name) = remove {
            removed.names = self.remove(name).await?;
        } else if prune {
            removed = self.prune().await?;
        }
        let (images, disk) = self.list().await?;
        Ok(ImagesOnNode {
            images,
            disk,
            removed: removed.names,
            freed_bytes: removed.freed_bytes,
        })
    }

    /// `image rm NAME`: every record of that name; refused while in use.
    pub async fn remove(&self, name: &str) -> Result<Vec<String>, RemoveError> {
        let name = normalize_image(name).map_err(|e| RemoveError::Bad(e.to_string()))?;
        let _busy = self.busy.lock().await;
        let (images, in_use) = self.survey().await?;
        let record = images
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| RemoveError::NotFound(name.clone()))?;
        if in_use.contains(&record.digest) {
            return Err(RemoveError::InUse(name));
        }
        self.images.remove_image(&name).await?;
        self.removed.notify_one();
        Ok(vec![name])
    }

    /// `image prune`: every image nothing here uses, whatever its age.
    pub async fn prune(&self) -> Result<Removed, ExecError> {
        let _busy = self.busy.lock().await;
        let before = self.images.image_disk().await.ok();
        let (images, in_use) = self.survey().await?;
        let mut removed = Removed::default();
        for i in images.iter().filter(|i| !in_use.contains(&i.digest)) {
            self.images.remove_image(&i.name).await?;
            removed.names.push(i.name.clone());
        }
        removed.freed_bytes = freed(before, self.images.image_disk().await.ok());
        if !removed.names.is_empty() {
            self.removed.notify_one();
        }
        Ok(removed)
    }

    /// One collection: when the image disk is past the high-water mark,
    /// unused images go, least recently used first, until it is below the
    /// low-water mark or nothing unused and old enough is left.
    pub async fn collect(&self) -> Result<Removed, ExecError> {
        let policy = *self.policy.borrow();
        let mut removed = Removed::default();
        let before = self.images.image_disk().await?;
        if policy.high_percent >= 100 || before.percent() < policy.high_percent as f64 {
            self.stuck.store(false, Ordering::Relaxed);
            return Ok(removed);
        }
        let _busy = self.busy.lock().await;
        let (images, in_use) = self.survey().await?;
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let order = gc_order(&images, &in_use, &seen, now_ms(), policy.min_age_ms);
        for digest in order {
            if self.images.image_disk().await?.percent() < policy.low_percent as f64 {
                break;
            }
            // A task may have started on it since the survey.
            let (_, in_use) = self.survey().await?;
            if in_use.contains(&digest) {
                continue;
            }
            for i in images.iter().filter(|i| i.digest == digest) {
                self.images.remove_image(&i.name).await?;
                removed.names.push(i.name.clone());
            }
        }
        let after = self.images.image_disk().await?;
        removed.freed_bytes = freed(Some(before), Some(after));
        if removed.names.is_empty() {
            if self.stuck.swap(true, Ordering::Relaxed) {
                return Ok(removed);
            }
            warn!(
                full = format!("{:.0}%", before.percent()),
                high = policy.high_percent,
                "the image disk is past its high-water mark and no unused image is old enough to remove"
            );
        } else {
            self.stuck.store(false, Ordering::Relaxed);
            self.removed.notify_one();
            info!(
                images = ?removed.names,
                freed_mb = removed.freed_bytes / 1_000_000,
                now = format!("{:.0}%", after.percent()),
                "image GC removed unused images"
            );
        }
        Ok(removed)
    }

    /// Collects every period, after a pull, and when the policy changes.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut policy = self.policy.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(GC_PERIOD) => {}
                _ = self.poke.notified() => {}
                r = policy.changed() => if r.is_err() { return },
            }
            if let Err(e) = self.collect().await {
                warn!(error = %e, "image GC");
            }
        }
    }

    /// The images, and the digests in use; notes what was seen when.
    async fn survey(&self) -> Result<(Vec<ImageInfo>, HashSet<String>), ExecError> {
        let images = self.images.images().await?;
        let containers = self.images.images_in_use().await?;
        let tasks: Assignments = self
            .assignments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|rx| rx.borrow().clone())
            .unwrap_or_default();
        let wanted: Vec<(String, Option<String>)> = tasks
            .iter()
            .filter(|t| t.desired_state <= TaskState::Running)
            .map(|t| {
                (
                    t.spec.container.image.clone(),
                    t.spec.container.image_digest.clone(),
                )
            })
            .collect();
        let in_use = in_use(&images, &containers, &wanted);
        let now = now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|d, _| images.iter().any(|i| &i.digest == d));
        for i in &images {
            let s = seen.entry(i.digest.clone()).or_insert(Seen {
                first_ms: now,
                last_used_ms: 0,
            });
            if in_use.contains(&i.digest) {
                s.last_used_ms = now;
            }
        }
        Ok((images, in_use))
    }
}

fn freed(before: Option<DiskUsage>, after: Option<DiskUsage>) -> u64 {
    match (before, after) {
        (Some(b), Some(a)) => b.used_bytes.saturating_sub(a.used_bytes),
        _ => 0,
    }
}

/// The digests in use: those of the images containers were made from,
/// and those that tasks assigned to run here name (by pinned digest, or
/// by name when not pinned).
pub fn in_use(
    images: &[ImageInfo],
    containers: &[String],
    tasks: &[(String, Option<String>)],
) -> HashSet<String> {
    let by_name = |name: &str| images.iter().find(|i| i.name == name).map(|i| &i.digest);
    let mut used = HashSet::new();
    for c in containers {
        if let Some(d) = by_name(c) {
            used.insert(d.clone());
        }
        // A container made from `repo@sha256:…` uses that digest.
        if let Some((_, d)) = c.split_once('@') {
            used.insert(d.to_string());
        }
    }
    for (image, digest) in tasks {
        if let Some(d) = digest {
            used.insert(d.clone());
        }
        if let Some(d) = normalize_image(image).ok().and_then(|n| by_name(&n)) {
            used.insert(d.clone());
        }
    }
    used
}

/// The order in which unused images go: least recently used first (never
/// used before all), skipping any younger than `min_age_ms` here.
pub fn gc_order(
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    seen: &HashMap<String, Seen>,
    now_ms: i64,
    min_age_ms: u64,
) -> Vec<String> {
    let mut digests: Vec<(i64, String)> = Vec::new();
    for i in images {
        if in_use.contains(&i.digest) || digests.iter().any(|(_, d)| d == &i.digest) {
            continue;
        }
        let s = seen.get(&i.digest).copied().unwrap_or(Seen {
            first_ms: now_ms,
            last_used_ms: 0,
        });
        if now_ms.saturating_sub(s.first_ms) < min_age_ms as i64 {
            continue;
        }
        digests.push((s.last_used_ms, i.digest.clone()));
    }
    digests.sort();
    digests.into_iter().map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, digest: &str) -> ImageInfo {
        ImageInfo {
            name: name.into(),
            digest: digest.into(),
            ..Default::default()
        }
    }

    #[test]
    fn containers_and_assigned_tasks_hold_their_images() {
        let images = [
            img("docker.io/library/a:1", "sha256:a"),
            img("docker.io/library/b:1", "sha256:b"),
            img("docker.io/library/c:1", "sha256:c"),
            img("docker.io/library/d:1", "sha256:d"),
            img("docker.io/library/e:1", "sha256:e"),
        ];
        let used = in_use(
            &images,
            &["docker.io/library/a:1".into(), "x.io/r@sha256:b".into()],
            &[
                ("c:1".into(), None),
                ("whatever:2".into(), Some("sha256:d".into())),
            ],
        );
        let mut used: Vec<_> = used.into_iter().collect();
        used.sort();
        assert_eq!(used, ["sha256:a", "sha256:b", "sha256:c", "sha256:d"]);
    }

    #[test]
    fn least_recently_used_goes_first_and_young_images_stay() {
        let images = [
            img("a:1", "sha256:a"),
            img("a:latest", "sha256:a"),
            img("b:1", "sha256:b"),
            img("c:1", "sha256:c"),
            img("young:1", "sha256:y"),
            img("busy:1", "sha256:u"),
        ];
        let seen: HashMap<String, Seen> = [
            ("sha256:a", 0, 500),
            ("sha256:b", 0, 0),
            ("sha256:c", 0, 100),
            ("sha256:y", 990, 0),
            ("sha256:u", 0, 1000),
        ]
        .into_iter()
        .map(|(d, first_ms, last_used_ms)| {
            (
                d.to_string(),
                Seen {
                    first_ms,
                    last_used_ms,
                },
            )
        })
        .collect();
        let in_use: HashSet<String> = ["sha256:u".to_string()].into();
        let order = gc_order(&images, &in_use, &seen, 1000, 100);
        assert_eq!(order, ["sha256:b", "sha256:c", "sha256:a"]);
        // With no minimum age, the young one goes first: it was never used.
        let order = gc_order(&images, &in_use, &seen, 1000, 0);
        assert_eq!(order[0], "sha256:b");
        assert!(order.contains(&"sha256:y".to_string()));
        assert!(!order.contains(&"sha256:u".to_string()));
    }

    #[test]
    fn a_node_image_crosses_the_wire() {
        use crate::rpc::messages::ImagesReply;
        let reply = ImagesReply {
            images: vec![NodeImage {
                info: img("a:1", "sha256:a"),
                in_use: true,
            }],
            ..Default::default()
        };
        let back: ImagesReply = crate::format::decode(&crate::format::encode(&reply)).unwrap();
        assert_eq!(back.images, reply.images);
    }

    #[test]
    fn policy_bounds() {
        assert!(ImageGc::default().check().is_ok());
        let bad = |high, low| {
            ImageGc {
                high_percent: high,
                low_percent: low,
                min_age_ms: 0,
            }
            .check()
            .is_err()
        };
        assert!(bad(0, 0));
        assert!(bad(101, 50));
        assert!(bad(80, 80));
        assert!(bad(80, 90));
        assert!(!bad(100, 99));
    }
}
