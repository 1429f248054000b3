//! A decoded copy of one kind of object (the tasks, the nodes), kept
//! current from the store's commits. The control loops look at every task
//! and node on each pass; with the copy they decode only what changed since
//! their last pass, as the dispatcher's index does, instead of all of it,
//! and they learn what changed, so that they can skip what did not. The
//! copy is always exactly the state of one read view, never a mix of two.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Commit, Kind, Object, ReadView, Store, StoreError, Written};
use crate::types::{Node, Task};

/// How long to wait for the event of a commit that a view already shows
/// (it is published right after the commit); a copy that waits longer is
/// read afresh.
const EVENT_WAIT: Duration = Duration::from_secs(1);

pub struct Mirror {
    kind: Kind,
    /// The objects, shared with the commits that wrote them (never copied).
    objects: HashMap<String, Arc<Object>>,
    events: broadcast::Receiver<Arc<Commit>>,
    /// The commit index the copy is at; None until it is first read.
    at: Option<u64>,
}

/// One changed object: as it was before and as it is now (None: it did
/// not exist then, or does not now).
pub type BeforeAfter = (Option<Arc<Object>>, Option<Arc<Object>>);

/// What an `update` changed.
#[derive(Debug)]
pub enum Delta {
    /// The copy was read afresh: take everything as changed.
    All,
    /// These objects changed.
    Some(Vec<BeforeAfter>),
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        matches!(self, Delta::Some(v) if v.is_empty())
    }

    /// Every version of every changed object, before and after.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        let list = match self {
            Delta::All => &[][..],
            Delta::Some(v) => v.as_slice(),
        };
        list.iter()
            .flat_map(|(a, b)| a.iter().chain(b.iter()))
            .map(|o| o.as_ref())
    }
}

impl Mirror {
    /// An empty copy of the objects of `kind` that follows `store` from now
    /// on: the first `update` reads them all.
    pub fn new(store: &Store, kind: Kind) -> Mirror {
        Mirror {
            kind,
            objects: HashMap::new(),
            events: store.watch(),
            at: None,
        }
    }

    /// Bring the copy to the state of `view`, a view read after the last
    /// call, and say what changed. What the commits in between carried is
    /// taken from them; only what they did not carry is read.
    pub async fn update(&mut self, view: &ReadView) -> Result<Delta, StoreError> {
        let target = view.index()?;
        let Some(mut at) = self.at else {
            return self.reload(view, target);
        };
        // Each commit carries what it wrote: the copy takes it from there,
        // in order, and reads only what a commit did not carry.
        let mut written: HashMap<String, Written> = HashMap::new();
        while at < target {
            let commit = match tokio::time::timeout(EVENT_WAIT, self.events.recv()).await {
                Ok(Ok(c)) => c,
                // Fell behind, or the events stopped: read everything.
                Ok(Err(_)) | Err(_) => return self.reload(view, target),
            };
            // A commit the view does not show (or out of order, as after a
            // snapshot was installed): its event is gone, so the next
            // update must read everything too.
            if commit.index > target || commit.index <= at {
                let all = self.reload(view, target)?;
                self.at = None;
                return Ok(all);
            }
            at = commit.index;
            for ch in commit.changed.iter().filter(|ch| ch.is(self.kind)) {
                written.insert(ch.id.clone(), ch.written.clone());
            }
        }
        let mut changed = Vec::with_capacity(written.len());
        for (id, w) in written {
            let now = match w {
                Written::Object(o) => Some(o).filter(|o| o.kind() == self.kind),
                Written::Deleted => None,
                Written::Unread => view.object(self.kind, &id)?.map(Arc::new),
            };
            let before = match &now {
                Some(o) => self.objects.insert(id, o.clone()),
                None => self.objects.remove(&id),
            };
            changed.push((before, now));
        }
        self.at = Some(target);
        Ok(Delta::Some(changed))
    }

    fn reload(&mut self, view: &ReadView, target: u64) -> Result<Delta, StoreError> {
        // Events already queued are in the view: drop them.
        while self.events.try_recv().is_ok() {}
        self.objects = view
            .objects(self.kind)?
            .into_iter()
            .map(|o| (o.id().to_string(), Arc::new(o)))
            .collect();
        self.at = Some(target);
        Ok(Delta::All)
    }

    /// Every task, in no particular order (none unless this copies tasks).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.objects.values().filter_map(|o| o.as_task())
    }

    /// Every node, in no particular order (none unless this copies nodes).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.objects.values().filter_map(|o| o.as_node())
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
