//! `shoal stack`: compose files deployed as one change set, listed, and
//! removed in reverse start order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::node::encode;
use super::{table, Client, Format};
use crate::api::stack_types::{StackPlan, StackRow};
use crate::api::stacks::StackInfo;
use crate::api::types::{Created, ServiceRow, TaskRow};

#[derive(Subcommand)]
pub enum StackCmd {
    /// Create or update a stack from compose files: creates what is
    /// missing, updates what differs (rolling), leaves the rest alone.
    Deploy {
        /// A compose file; several are merged in order ("-": stdin).
        #[arg(short = 'c', long = "compose-file", required = true)]
        compose_file: Vec<String>,
        /// Remove the stack's services that the files no longer have.
        #[arg(long)]
        prune: bool,
        /// Print the plan (+ create, ~ update, - remove) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ask the registries what the image tags name: always (a tag
        /// pushed again rolls its services), changed (only images the
        /// files changed), never.
        #[arg(long, default_value = "always", value_parser = ["always", "changed", "never"])]
        resolve_image: String,
        /// The stack's name: its objects are named STACK_NAME.
        stack: String,
    },
    /// List stacks.
    #[command(visible_alias = "list")]
    Ls {
        /// A table, or JSON.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List a stack's services.
    Services {
        /// The stack's name.
        stack: String,
        /// A table, or JSON.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List a stack's tasks.
    Ps {
        /// The stack's name.
        stack: String,
        /// A table, or JSON.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove stacks: services in reverse dependency order, each waited
    /// for until its tasks are gone, then networks, secrets and configs.
    #[command(visible_alias = "remove")]
    Rm {
        /// The stacks' names.
        #[arg(required = true)]
        stacks: Vec<String>,
        /// Do not wait for the tasks to go.
        #[arg(short, long)]
        detach: bool,
    },
}

pub async fn run(client: &Client, cmd: StackCmd) -> anyhow::Result<()> {
    match cmd {
        StackCmd::Deploy {
            compose_file,
            prune,
            dry_run,
            resolve_image,
            stack,
        } => {
            // The files are read before the daemon is asked anything: a
            // mistake in them is reported whatever the cluster's state.
            let loaded = crate::compose::load_files(&compose_file, &stack)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let mut deploy = loaded.deploy;
            deploy.prune = prune;
            deploy.dry_run = dry_run;
            deploy.resolve_image = resolve_image.parse().map_err(anyhow::Error::msg)?;
            let plan: StackPlan = client
                .put(&format!("/v1/stacks/{}", encode(&stack)), &deploy)
                .await?;
            for w in &plan.warnings {
                eprintln!("warning: {w}");
            }
            print_plan(&plan, &stack, dry_run);
        }
        StackCmd::Ls { format } => {
            let rows: Vec<StackRow> = client.get("/v1/stacks").await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.services.to_string(),
                        r.orchestrator.clone(),
                    ]
                })
                .collect();
            table::print(&["NAME", "SERVICES", "ORCHESTRATOR"], &cells);
        }
        StackCmd::Services { stack, format } => {
            let info: StackInfo = client
                .get(&format!("/v1/stacks/{}", encode(&stack)))
                .await?;
            let rows: Vec<ServiceRow> = client.get("/v1/services").await?;
            let rows: Vec<ServiceRow> = rows
                .into_iter()
                .filter(|r| info.services.iter().any(|s| s.id == r.id))
                .collect();
            if format == Format::Json {
                return table::json(&rows);
            }
            super::service::print_services(&rows);
        }
        StackCmd::Ps { stack, format } => {
            let rows: Vec<TaskRow> = client
                .get(&format!("/v1/stacks/{}/tasks", encode(&stack)))
                .await?;
            if rows.is_empty() {
                // A stack with no tasks and no objects is no stack.
                let _: StackInfo = client
                    .get(&format!("/v1/stacks/{}", encode(&stack)))
                    .await?;
            }
            if format == Format::Json {
                return table::json(&rows);
            }
            super::service::print_tasks(&rows);
        }
        StackCmd::Rm { stacks, detach } => {
            for stack in stacks {
                remove(client, &stack, detach).await?;
            }
        }
    }
    Ok(())
}

fn print_plan(plan: &StackPlan, stack: &str, dry_run: bool) {
    let mut unchanged = 0;
    let mut counts = [0usize; 3];
    for c in &plan.changes {
        let (sign, i) = match c.action.as_str() {
            "create" => ('+', 0),
            "update" => ('~', 1),
            "remove" => ('-', 2),
            _ => {
                unchanged += 1;
                continue;
            }
        };
        counts[i] += 1;
        match c.fields.is_empty() {
            true => println!("{sign} {} {}", c.kind, c.name),
            false => println!("{sign} {} {} ({})", c.kind, c.name, c.fields.join(", ")),
        }
    }
    let [create, update, remove] = counts;
    let verb = match dry_run {
        true => "would be",
        false => "",
    };
    let summary = format!(
        "{create} to create, {update} to update, {remove} to remove, {unchanged} unchanged"
    );
    match dry_run {
        true => println!("stack {stack}: {summary} (dry run: nothing {verb} written)"),
        false => println!("stack {stack}: {summary}"),
    }
}

/// The longest `stack rm` waits for one service's tasks to go.
const REMOVE_WAIT: Duration = Duration::from_secs(300);

async fn remove(client: &Client, stack: &str, detach: bool) -> anyhow::Result<()> {
    let info: StackInfo = client.get(&format!("/v1/stacks/{}", encode(stack))).await?;
    for name in removal_order(&info) {
        println!("Removing service {name}");
        let _: Created = client
            .delete(&format!("/v1/services/{}", encode(&name)))
            .await?;
        if !detach {
            wait_gone(client, stack, &name).await?;
        }
    }
    for (kind, path, list) in [
        ("network", "networks", &info.networks),
        ("secret", "secrets", &info.secrets),
        ("config", "configs", &info.configs),
    ] {
        for name in list {
            println!("Removing {kind} {name}");
            let _: serde_json::Value = client
                .delete(&format!("/v1/{path}/{}", encode(name)))
                .await?;
        }
    }
    Ok(())
}

/// The stack's services, those that others depend on after those others:
/// the reverse of the order they start in.
fn removal_order(info: &StackInfo) -> Vec<String> {
    let deps: BTreeMap<&str, Vec<&str>> = info
        .services
        .iter()
        .map(|s| {
            (
                s.spec.name.as_str(),
                s.spec
                    .depends_on
                    .iter()
                    .map(|d| d.service.as_str())
                    .collect(),
            )
        })
        .collect();
    let mut left: Vec<&str> = deps.keys().copied().collect();
    let mut order = Vec::new();
    while !left.is_empty() {
        // Whatever no remaining service depends on goes first; a cycle
        // (which a deploy refuses) is broken in name order.
        let free: Vec<&str> = left
            .iter()
            .copied()
            .filter(|s| !left.iter().any(|o| deps[o].contains(s)))
            .collect();
        let next = free.first().copied().unwrap_or(left[0]);
        left.retain(|s| *s != next);
        order.push(next.to_string());
    }
    order
}

async fn wait_gone(client: &Client, stack: &str, service: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut said = usize::MAX;
    loop {
        let rows: Vec<TaskRow> = client
            .get(&format!("/v1/stacks/{}/tasks", encode(stack)))
            .await?;
        let left = rows.iter().filter(|t| t.service == service).count();
        if left == 0 {
            return Ok(());
        }
        if left != said {
            println!("  {service}: {left} task(s) left");
            said = left;
        }
        if start.elapsed() > REMOVE_WAIT {
            anyhow::bail!(
                "{service}: {left} task(s) still there after {}s; they go once their nodes stop them (`shoal stack ps {stack}`)",
                REMOVE_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_go_first() {
        let svc = |name: &str, deps: &[&str]| -> crate::api::spec::ServiceBody {
            let spec = crate::api::spec::ServiceSpecBody {
                depends_on: deps
                    .iter()
                    .map(|d| crate::api::spec::DependsOnBody {
                        service: d.to_string(),
                        condition: "service_started".into(),
                    })
                    .collect(),
                ..serde_json::from_value(serde_json::json!({"name": name, "image": "x"})).unwrap()
            };
            serde_json::from_value(serde_json::json!({
                "id": name, "version": 1, "created_ms": 0, "updated_ms": 0,
                "spec": spec, "spec_version": 1,
            }))
            .unwrap()
        };
        let info = StackInfo {
            name: "s".into(),
            services: vec![
                svc("s_api", &["s_db"]),
                svc("s_db", &[]),
                svc("s_web", &["s_api"]),
            ],
            networks: vec![],
            secrets: vec![],
            configs: vec![],
        };
        assert_eq!(removal_order(&info), vec!["s_web", "s_api", "s_db"]);
    }
}
