//! In-process scenarios: managers and workers in this process, everything
//! real but the containers (simulated, scripted per image: see
//! `shoal::sim`). No root, no containerd; each scenario takes seconds.
//! Simulated executor: what only containerd can show is in the other tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal::sim::objects::service;
use shoal::sim::{worker_id, Behavior, Config, SimCluster, IMAGE};
use shoal::store::ReadView;
use shoal::types::{
    Dependency, DependsCondition, FailureAction, NodeState, RestartCondition, RestartPolicy,
    ServiceMode, TaskState, UpdateOrder, UpdatePolicy, UpdateState,
};

/// Every wait is bounded by this; the scenario as a whole must stay well
/// under ten seconds.
const WAIT: Duration = Duration::from_secs(8);
/// The most a whole scenario may take.
const SCENARIO: Duration = Duration::from_secs(10);

/// One scenario at a time: each runs three Rafts that sync to disk, and on
/// two cores scenarios run side by side would time each other, not
/// themselves.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario's turn: taken before it starts, timed until it ends.
struct Turn {
    _one: tokio::sync::MutexGuard<'static, ()>,
    started: Instant,
}

impl Turn {
    async fn take() -> Turn {
        let one = ONE_AT_A_TIME.lock().await;
        Turn {
            _one: one,
            started: Instant::now(),
        }
    }

    /// Stop what is left of `cluster`, and check the scenario's time.
    async fn end(self, cluster: SimCluster) {
        cluster.shutdown().await;
        let took = self.started.elapsed();
        assert!(took < SCENARIO, "the scenario took {took:?}");
    }
}

/// Whether service `name` has converged as `service ps` would show it:
/// exactly one task meant to run in each slot 1..=replicas, each running,
/// of the service's current spec (or an older one of the same content,
/// which a rollback keeps), and none on a node in `dead`.
fn converged(view: &ReadView, name: &str, replicas: u64, dead: &[String]) -> anyhow::Result<bool> {
    let Some(service) = view.find_service(name)? else {
        return Ok(false);
    };
    let mut by_slot: BTreeMap<u64, usize> = BTreeMap::new();
    for t in view.tasks_of_service(&service.id)? {
        if t.desired_state > TaskState::Running {
            continue;
        }
        let running = t.status.state == TaskState::Running
            && service.is_current(&t)
            && t.node_id.as_ref().is_some_and(|n| !dead.contains(n));
        if !running {
            return Ok(false);
        }
        *by_slot.entry(t.slot).or_default() += 1;
    }
    Ok(by_slot.len() as u64 == replicas
        && by_slot.keys().copied().eq(1..=replicas)
        && by_slot.values().all(|n| *n == 1))
}

/// Create a service of `replicas` tasks of `image`, and wait until they
/// all run.
async fn start_service(cluster: &SimCluster, name: &str, image: &str, replicas: u64) {
    run_service(cluster, service(name, image, replicas), replicas).await;
}

/// Service `name` as the store has it now.
fn stored(cluster: &SimCluster, name: &str) -> shoal::types::Service {
    let view = cluster.view().unwrap();
    view.find_service(name)
        .unwrap()
        .expect("the service exists")
}

/// Create `svc`, of `replicas` tasks, and wait until they all run.
async fn run_service(cluster: &SimCluster, svc: shoal::types::Service, replicas: u64) {
    let name = svc.spec.name.clone();
    cluster.create_service(svc).await.unwrap();
    let what = format!("{replicas} tasks of {name} running");
    cluster
        .wait_until(&what, WAIT, |v| converged(v, &name, replicas, &[]))
        .await
        .unwrap();
}

/// A cluster of `managers` and `workers` whose simulated executor runs
/// `image` as `behavior` says (and the default image as usual).
async fn scripted(managers: usize, workers: usize, image: &str, behavior: Behavior) -> SimCluster {
    let mut cfg = Config::new(managers, workers);
    cfg.images.push(image.to_string());
    let cluster = SimCluster::with(&cfg).await.unwrap();
    cluster.script().set(image, behavior);
    cluster
}

fn node_state(view: &ReadView, id: &str) -> anyhow::Result<Option<NodeState>> {
    Ok(view.node(id)?.map(|n| n.status.state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_worker_killed_tasks_are_replaced() {
    let turn = Turn::take().await;
    let mut cluster = SimCluster::start(3, 10).await.unwrap();
    start_service(&cluster, "web", IMAGE, 20).await;

    let old_leader = cluster.leader().expect("a manager leads");
    cluster.kill_manager(old_leader).await;
    let new_leader = cluster.wait_for_leader(WAIT).await.unwrap();
    assert_ne!(new_leader, old_leader);

    // A worker that ran some of web's tasks loses power.
    let running = cluster.running("web").unwrap();
    let victim = running[0]
        .node_id
        .clone()
        .expect("a running task has a node");
    let index = (0..10).find(|i| worker_id(*i) == victim).unwrap();
    let lost: Vec<u64> = running
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(victim.as_str()))
        .map(|t| t.slot)
        .collect();
    assert!(!lost.is_empty());
    cluster.kill_worker(index).await;

    let dead = [victim.clone()];
    cluster
        .wait_until(
            "the dead worker is down and web runs 20 tasks on the others",
            WAIT,
            |v| {
                Ok(node_state(v, &victim)? == Some(NodeState::Down)
                    && converged(v, "web", 20, &dead)?)
            },
        )
        .await
        .unwrap();
    // The lost slots run again, each on a surviving worker.
    let running = cluster.running("web").unwrap();
    assert_eq!(running.len(), 20);
    for slot in lost {
        let t = running.iter().find(|t| t.slot == slot).unwrap();
        assert_ne!(t.node_id.as_deref(), Some(victim.as_str()));
    }
    turn.end(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_workers_tasks_move_to_the_others() {
    let turn = Turn::take().await;
    let cluster = SimCluster::start(3, 4).await.unwrap();
    start_service(&cluster, "db", IMAGE, 8).await;
    let drained = worker_id(0);
    assert!(cluster
        .running("db")
        .unwrap()
        .iter()
        .any(|t| t.node_id.as_deref() == Some(drained.as_str())));
    cluster.drain(&drained).await.unwrap();

    let gone = [drained.clone()];
    cluster
        .wait_until("db runs 8 tasks, none on the drained worker", WAIT, |v| {
            converged(v, "db", 8, &gone)
        })
        .await
        .unwrap();
    // Drained, not lost: the worker stopped its tasks, as the store shows.
    let stopped: Vec<_> = cluster
        .tasks("db")
        .unwrap()
        .into_iter()
        .filter(|t| t.node_id.as_deref() == Some(drained.as_str()))
        .collect();
    assert!(!stopped.is_empty());
    assert!(stopped
        .iter()
        .all(|t| t.status.state == TaskState::Shutdown));
    // The drained worker is alive, and now runs nothing.
    assert_eq!(cluster.worker(0).unwrap().executor.running(), 0);
    turn.end(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_non_zero_is_restarted_per_policy() {
    let turn = Turn::take().await;
    let crash = "docker.io/library/crash:latest";
    // The first two runs exit with 1 after a moment; the third stays up.
    let cluster = scripted(
        1,
        3,
        crash,
        Behavior {
            exit: Some((1, Duration::from_millis(100))),
            exits: Some(2),
            ..Default::default()
        },
    )
    .await;
    let delay_ms = 200;
    let mut svc = service("crashy", crash, 1);
    svc.spec.task.restart = RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay_ms,
        max_attempts: Some(5),
    };
    cluster.create_service(svc).await.unwrap();
    cluster
        .wait_until("crashy runs after two restarts", WAIT, |v| {
            Ok(converged(v, "crashy", 1, &[])?
                && cluster.running("crashy")?.iter().any(|t| t.restarts == 2))
        })
        .await
        .unwrap();

    let mut tasks = cluster.tasks("crashy").unwrap();
    tasks.sort_by_key(|t| t.restarts);
    assert_eq!(tasks.len(), 3, "one task per run: {tasks:#?}");
    assert!(tasks.iter().all(|t| t.slot == 1));
    for (failed, next) in tasks.iter().zip(&tasks[1..]) {
        assert_eq!(failed.status.state, TaskState::Failed);
        assert_eq!(failed.status.exit_code, Some(1));
        assert!(failed.desired_state > TaskState::Running);
        assert_eq!(next.restarts, failed.restarts + 1);
        // The replacement waited out the restart delay.
        assert!(
            next.meta.created_ms >= failed.status.timestamp_ms + delay_ms as i64,
            "restarted {} ms after the failure",
            next.meta.created_ms - failed.status.timestamp_ms
        );
    }
    turn.end(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_completes_under_a_new_leader() {
    let turn = Turn::take().await;
    // A rolling update replaces one slot at a time, each a few status
    // batches long: enough slots to kill the leader mid-way, few enough
    // to stay within the scenario's time.
    const REPLICAS: u64 = 4;
    let v2 = "docker.io/library/sim:v2";
    let mut cfg = Config::new(3, 10);
    cfg.images.push(v2.to_string());
    let mut cluster = SimCluster::with(&cfg).await.unwrap();
    // Slow starts, so that the leader dies with the update under way.
    cluster.script().set(
        v2,
        Behavior {
            start_delay: Duration::from_millis(50),
            ..Default::default()
        },
    );
    start_service(&cluster, "api", IMAGE, REPLICAS).await;

    cluster.update_image("api", v2).await.unwrap();
    cluster
        .wait_until("the update has replaced a task", WAIT, |_| {
            Ok(cluster
                .running("api")?
                .iter()
                .any(|t| t.spec.container.image == v2))
        })
        .await
        .unwrap();
    let updated = cluster
        .running("api")
        .unwrap()
        .iter()
        .filter(|t| t.spec.container.image == v2)
        .count();
    assert!(updated < REPLICAS as usize, "the update finished too soon");
    let old_leader = cluster.leader().expect("a manager leads");
    cluster.kill_manager(old_leader).await;
    let new_leader = cluster.wait_for_leader(WAIT).await.unwrap();
    assert_ne!(new_leader, old_leader);

    cluster
        .wait_until("api runs every task on the new image", WAIT, |v| {
            converged(v, "api", REPLICAS, &[])
        })
        .await
        .unwrap();
    let running = cluster.running("api").unwrap();
    assert!(running.iter().all(|t| t.spec.container.image == v2));
    turn.end(cluster).await;
}

/// A virtual IP is never given twice, across a leader kill: the store
/// refuses a second service with one that another holds, whichever
/// leader applies the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_ip_is_never_given_twice_across_a_leader_kill() {
    let turn = Turn::take().await;
    let mut cluster = SimCluster::start(3, 0).await.unwrap();
    let vip = |addr: &str| shoal::types::Vip {
        network: "n1".into(),
        addr: addr.into(),
    };
    let mut a = service("a", IMAGE, 0);
    a.vips = vec![vip("10.30.0.2")];
    cluster.create_service(a).await.unwrap();

    let old_leader = cluster.leader().expect("a manager leads");
    cluster.kill_manager(old_leader).await;
    let new_leader = cluster.wait_for_leader(WAIT).await.unwrap();
    assert_ne!(new_leader, old_leader);

    let mut b = service("b", IMAGE, 0);
    b.vips = vec![vip("10.30.0.2")];
    let refused = cluster.create_service(b.clone()).await;
    let e = refused.expect_err("a second service got a VIP that another holds");
    assert!(e.to_string().contains("virtual IP 10.30.0.2"), "{e}");
    // With another one it is taken, and the first keeps its own.
    b.vips = vec![vip("10.30.0.3")];
    cluster.create_service(b).await.unwrap();
    let view = cluster.view().unwrap();
    let held = |name: &str| view.find_service(name).unwrap().unwrap().vips;
    assert_eq!(held("a"), vec![vip("10.30.0.2")]);
    assert_eq!(held("b"), vec![vip("10.30.0.3")]);
    turn.end(cluster).await;
}

/// An update whose new tasks fail rolls back on its own, two slots at a
/// time, and the rollback completes under a new leader: every slot runs
/// the first image again, and the service says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_update_rolls_back_under_a_new_leader() {
    let turn = Turn::take().await;
    const REPLICAS: u64 = 4;
    let bad = "docker.io/library/sim:bad";
    let mut cfg = Config::new(3, 6);
    cfg.images.push(bad.to_string());
    let mut cluster = SimCluster::with(&cfg).await.unwrap();
    // Every run of the new image exits 1 soon after it starts.
    cluster.script().set(
        bad,
        Behavior {
            exit: Some((1, Duration::from_millis(100))),
            ..Default::default()
        },
    );
    let mut svc = service("api", IMAGE, REPLICAS);
    let quick = UpdatePolicy {
        parallelism: 2,
        failure_action: FailureAction::Rollback,
        monitor_ms: 300,
        ..UpdatePolicy::default()
    };
    svc.spec.update = quick.clone();
    svc.spec.rollback = UpdatePolicy {
        failure_action: FailureAction::Pause,
        ..quick
    };
    svc.spec.task.restart = RestartPolicy {
        delay_ms: 200,
        ..RestartPolicy::default()
    };
    run_service(&cluster, svc, REPLICAS).await;

    cluster.update_image("api", bad).await.unwrap();
    let state = |v: &ReadView| -> anyhow::Result<Option<UpdateState>> {
        Ok(v.find_service("api")?
            .and_then(|s| s.update_status)
            .map(|u| u.state))
    };
    cluster
        .wait_until("the update rolls back", WAIT, |v| {
            Ok(state(v)?.is_some_and(|s| s.is_rollback()))
        })
        .await
        .unwrap();
    let old_leader = cluster.leader().expect("a manager leads");
    cluster.kill_manager(old_leader).await;
    cluster.wait_for_leader(WAIT).await.unwrap();
    cluster
        .wait_until("the rollback completes", WAIT, |v| {
            Ok(state(v)? == Some(UpdateState::RollbackCompleted)
                && converged(v, "api", REPLICAS, &[])?)
        })
        .await
        .unwrap();
    let running = cluster.running("api").unwrap();
    assert_eq!(running.len(), REPLICAS as usize);
    assert!(running.iter().all(|t| t.spec.container.image == IMAGE));
    let service = stored(&cluster, "api");
    assert_eq!(service.spec.task.container.image, IMAGE);
    assert_eq!(
        service.previous_spec.map(|s| s.task.container.image),
        Some(bad.to_string())
    );
    turn.end(cluster).await;
}

/// The fewest tasks of `name` running (as their nodes report, whatever
/// they are meant to do) at any sample until every slot runs `image`.
async fn lowest_while_updating(
    cluster: &SimCluster,
    name: &str,
    image: &str,
    replicas: u64,
) -> usize {
    let mut lowest = usize::MAX;
    let deadline = Instant::now() + WAIT;
    loop {
        let tasks = cluster.tasks(name).unwrap();
        let running = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count();
        lowest = lowest.min(running);
        if converged(&cluster.view().unwrap(), name, replicas, &[]).unwrap()
            && tasks
                .iter()
                .filter(|t| t.desired_state == TaskState::Running)
                .all(|t| t.spec.container.image == image)
        {
            return lowest;
        }
        assert!(Instant::now() < deadline, "the update never completed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Start-first never has fewer tasks running than asked for, all through
/// an update two slots at a time; stop-first, the same update, does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_never_drops_below_the_desired_count() {
    let turn = Turn::take().await;
    const REPLICAS: u64 = 4;
    let (v2, v3) = ("docker.io/library/sim:v2", "docker.io/library/sim:v3");
    let mut cfg = Config::new(1, 4);
    cfg.images.extend([v2.to_string(), v3.to_string()]);
    let cluster = SimCluster::with(&cfg).await.unwrap();
    // Slow starts: a slot without its old task would show.
    for image in [v2, v3] {
        cluster.script().set(
            image,
            Behavior {
                start_delay: Duration::from_millis(150),
                ..Default::default()
            },
        );
    }
    let mut svc = service("api", IMAGE, REPLICAS);
    svc.spec.update = UpdatePolicy {
        parallelism: 2,
        order: UpdateOrder::StartFirst,
        monitor_ms: 0,
        ..UpdatePolicy::default()
    };
    run_service(&cluster, svc, REPLICAS).await;
    cluster.update_image("api", v2).await.unwrap();
    let lowest = lowest_while_updating(&cluster, "api", v2, REPLICAS).await;
    assert!(
        lowest >= REPLICAS as usize,
        "start-first fell to {lowest} running"
    );

    // The same with stop-first: two slots are down at a time. (Once the
    // first rollout is written completed, or the write races it.)
    cluster
        .wait_until("the update completes", WAIT, |v| {
            Ok(v.find_service("api")?
                .and_then(|s| s.update_status)
                .is_some_and(|u| u.state == UpdateState::Completed))
        })
        .await
        .unwrap();
    let mut s = cluster
        .view()
        .unwrap()
        .find_service("api")
        .unwrap()
        .unwrap();
    let mut spec = s.spec.clone();
    spec.update.order = UpdateOrder::StopFirst;
    spec.task.container.image = v3.to_string();
    s.set_spec(spec, shoal::types::now_ms());
    cluster
        .propose(vec![shoal::store::Change::Update(
            shoal::store::Object::Service(s),
        )])
        .await
        .unwrap();
    let lowest = lowest_while_updating(&cluster, "api", v3, REPLICAS).await;
    assert!(
        lowest < REPLICAS as usize,
        "stop-first never fell below {REPLICAS}"
    );
    turn.end(cluster).await;
}

/// A replicated job in the simulated tier: 6 runs, at most 2 at once,
/// each run a success that is never run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_job_runs_to_completion_two_at_a_time() {
    let turn = Turn::take().await;
    let quick = "docker.io/library/sim:job";
    let cluster = scripted(
        1,
        3,
        quick,
        Behavior {
            exit: Some((0, Duration::from_millis(100))),
            ..Default::default()
        },
    )
    .await;
    let mut svc = service("batch", quick, 0);
    svc.spec.mode = ServiceMode::ReplicatedJob {
        completions: 6,
        max_concurrent: 2,
    };
    svc.spec.task.restart.condition = RestartCondition::OnFailure;
    cluster.create_service(svc).await.unwrap();
    let mut most = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        let tasks = cluster.tasks("batch").unwrap();
        let live = tasks.iter().filter(|t| t.is_live()).count();
        most = most.max(live);
        if tasks.iter().filter(|t| t.status.succeeded()).count() == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never completed: {tasks:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(most <= 2, "{most} tasks at once with max_concurrent 2");
    let tasks = cluster.tasks("batch").unwrap();
    assert_eq!(tasks.len(), 6, "a run was repeated: {tasks:#?}");
    turn.end(cluster).await;
}

/// An update one slot at a time whose third new task fails: the update
/// rolls back on its own, having replaced slots 1 and 2 only, and says
/// which task failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_fails_on_its_third_slot_rolls_back() {
    let turn = Turn::take().await;
    const REPLICAS: u64 = 5;
    let bad = "docker.io/library/sim:third";
    let cluster = scripted(
        1,
        2,
        bad,
        Behavior {
            good_runs: 2,
            exit: Some((1, Duration::from_millis(50))),
            ..Default::default()
        },
    )
    .await;
    let mut svc = service("api", IMAGE, REPLICAS);
    // A delay longer than a bad task lives: the next slot is replaced
    // only once the last one's failure would have been seen.
    svc.spec.update = UpdatePolicy {
        failure_action: FailureAction::Rollback,
        delay_ms: 300,
        monitor_ms: 200,
        ..UpdatePolicy::default()
    };
    svc.spec.rollback = UpdatePolicy {
        parallelism: 0,
        monitor_ms: 200,
        ..UpdatePolicy::default()
    };
    svc.spec.task.restart = RestartPolicy {
        delay_ms: 200,
        ..RestartPolicy::default()
    };
    run_service(&cluster, svc, REPLICAS).await;
    cluster.update_image("api", bad).await.unwrap();
    cluster
        .wait_until("the rollback completes", WAIT, |v| {
            Ok(v.find_service("api")?
                .and_then(|s| s.update_status)
                .is_some_and(|u| u.state == UpdateState::RollbackCompleted)
                && converged(v, "api", REPLICAS, &[])?)
        })
        .await
        .unwrap();
    let service = stored(&cluster, "api");
    let message = service.update_status.unwrap().message;
    assert!(message.contains("api.3"), "{message}");
    // The new image ran in slots 1 to 3 only: 4 and 5 were never touched.
    let mut slots: Vec<u64> = cluster
        .tasks("api")
        .unwrap()
        .iter()
        .filter(|t| t.spec.container.image == bad)
        .map(|t| t.slot)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots, vec![1, 2, 3]);
    let running = cluster.running("api").unwrap();
    assert!(running.iter().all(|t| t.spec.container.image == IMAGE));
    turn.end(cluster).await;
}

/// compose's `depends_on` in the simulated tier: a migration job, an app
/// that waits for it to complete successfully, and a web tier that waits
/// for the app to start, all created at once. No task of the app is
/// placed before the job's run succeeded, and none of the web before an
/// app task runs; meanwhile they wait saying for what. A replaced web
/// task (its node drained) is placed at once, the app running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_holds_tasks_until_their_dependencies_are_ready() {
    let turn = Turn::take().await;
    let migrate_image = "docker.io/library/sim:migrate";
    let cluster = scripted(
        1,
        2,
        migrate_image,
        Behavior {
            start_delay: Duration::from_millis(300),
            exit: Some((0, Duration::from_millis(500))),
            ..Default::default()
        },
    )
    .await;
    let mut migrate = service("migrate", migrate_image, 0);
    migrate.spec.mode = ServiceMode::ReplicatedJob {
        completions: 1,
        max_concurrent: 1,
    };
    migrate.spec.task.restart.condition = RestartCondition::OnFailure;
    let mut app = service("app", IMAGE, 2);
    app.spec.depends_on = vec![Dependency {
        service: "migrate".into(),
        condition: DependsCondition::CompletedSuccessfully,
    }];
    let mut web = service("web", IMAGE, 2);
    web.spec.depends_on = vec![Dependency {
        service: "app".into(),
        condition: DependsCondition::Started,
    }];
    // Dependents first: the order they are written in does not matter.
    cluster.create_service(web).await.unwrap();
    cluster.create_service(app).await.unwrap();
    cluster.create_service(migrate).await.unwrap();
    let mut saw_waiting = false;
    let deadline = Instant::now() + WAIT;
    loop {
        let (migrate, app, web) = (
            cluster.tasks("migrate").unwrap(),
            cluster.tasks("app").unwrap(),
            cluster.tasks("web").unwrap(),
        );
        let migrated = migrate.iter().any(|t| t.status.succeeded());
        let app_runs = app.iter().any(|t| t.status.state == TaskState::Running);
        assert!(
            migrated || app.iter().all(|t| t.node_id.is_none()),
            "an app task was placed before the migration completed: {app:#?}"
        );
        assert!(
            app_runs || web.iter().all(|t| t.node_id.is_none()),
            "a web task was placed before an app task ran: {web:#?}"
        );
        saw_waiting |= app.iter().any(|t| {
            t.status.message == "waiting for service migrate to complete successfully (depends_on)"
        });
        let view = cluster.view().unwrap();
        if converged(&view, "web", 2, &[]).unwrap() && converged(&view, "app", 2, &[]).unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the services never ran: {app:#?} {web:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_waiting, "the app's tasks never said what they wait for");
    // A replacement is held only while the dependency is not met.
    let node = cluster.tasks("web").unwrap()[0].node_id.clone().unwrap();
    cluster.drain(&node).await.unwrap();
    cluster
        .wait_until("web's tasks off the drained node", WAIT, |v| {
            converged(v, "web", 2, std::slice::from_ref(&node))
        })
        .await
        .unwrap();
    turn.end(cluster).await;
}
