//! A decoded copy of the tasks, kept current from the store's commits. The
//! control loops look at every task on each pass; with the copy they decode
//! only the tasks that changed since their last pass, as the dispatcher's
//! index does, instead of all of them. The copy is always exactly the state
//! of one read view, never a mix of two.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Commit, Kind, Object, ReadView, Store, StoreError, Written};
use crate::types::Task;

/// How long to wait for the event of a commit that a view already shows
/// (it is published right after the commit); a copy that waits longer is
/// read afresh.
const EVENT_WAIT: Duration = Duration::from_secs(1);

pub struct TaskMirror {
    /// Tasks, shared with the commits that wrote them (never copied).
    tasks: HashMap<String, Arc<Object>>,
    events: broadcast::Receiver<Arc<Commit>>,
    /// The commit index the copy is at; None until it is first read.
    at: Option<u64>,
}

impl TaskMirror {
    /// An empty copy that follows `store` from now on: the first `update`
    /// reads every task.
    pub fn new(store: &Store) -> TaskMirror {
        TaskMirror {
            tasks: HashMap::new(),
            events: store.watch(),
            at: None,
        }
    }

    /// Bring the copy to the state of `view`, a view read after the last
    /// call: the tasks the commits in between changed are read again.
    pub async fn update(&mut self, view: &ReadView) -> Result<(), StoreError> {
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
                self.reload(view, target)?;
                self.at = None;
                return Ok(());
            }
            at = commit.index;
            for ch in commit.changed.iter().filter(|ch| ch.is(Kind::Task)) {
                written.insert(ch.id.clone(), ch.written.clone());
            }
        }
        for (id, w) in written {
            let task = match w {
                Written::Object(o) => Some(o).filter(|o| o.as_task().is_some()),
                Written::Deleted => None,
                Written::Unread => view.task(&id)?.map(|t| Arc::new(Object::Task(t))),
            };
            match task {
                Some(t) => self.tasks.insert(id, t),
                None => self.tasks.remove(&id),
            };
        }
        self.at = Some(target);
        Ok(())
    }

    fn reload(&mut self, view: &ReadView, target: u64) -> Result<(), StoreError> {
        // Events already queued are in the view: drop them.
        while self.events.try_recv().is_ok() {}
        self.tasks = view
            .tasks()?
            .into_iter()
            .map(|t| (t.id.clone(), Arc::new(Object::Task(t))))
            .collect();
        self.at = Some(target);
        Ok(())
    }

    /// Every task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter_map(|o| o.as_task())
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
