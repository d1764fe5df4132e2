//! What the commands that act on machines share: the inventory, the selected hosts, the
//! locked state, the providers and the operator key, and a runtime to drive them.

use std::sync::Arc;
use std::time::Duration;

use super::Context;
use crate::bootstrap::{self, HostReport, Operator};
use crate::inventory::{Host, Inventory};
use crate::plan::apply;
use crate::state::{LockHolder, LockWait, SharedStateLock};

/// The selected hosts of a mutating command, with state locked for the whole run.
pub struct FleetSession {
    pub inventory: Arc<Inventory>,
    pub hosts: Vec<Host>,
    pub state: SharedStateLock,
}

impl Context {
    /// Loads the inventory (`--inventory`, else cairn.hcl found from the current directory).
    pub fn load_inventory(&self) -> miette::Result<Inventory> {
        let path = crate::inventory::locate(&self.cwd, self.inventory.as_deref())?;
        let inv = crate::inventory::load(&crate::inventory::LoadOptions {
            path,
            cli_vars: self.vars.clone(),
            env: std::env::vars().collect(),
        })?;
        // From here on, plan output and every rendered error leave these values out.
        crate::util::redact::register(inv.sensitive_values.0.iter().cloned());
        Ok(inv)
    }

    /// Loads the inventory, selects hosts and locks state for `command`.
    pub fn fleet_session(&self, selectors: &[String]) -> miette::Result<FleetSession> {
        let inventory = self.load_inventory()?;
        let hosts: Vec<Host> =
            crate::inventory::select(&inventory, selectors)?.into_iter().cloned().collect();
        crate::ui::progress::set_repo_root(inventory.root.clone());
        crate::ui::progress::set_log_dir(crate::repo::Repo::new(&inventory.root).logs_dir());
        let backend = self.open_state(&inventory)?;
        let wait = match self.lock_timeout.unwrap_or(Duration::from_secs(30)) {
            Duration::ZERO => LockWait::Fail,
            limit => LockWait::Timeout(limit),
        };
        let lock = backend.lock(LockHolder::from_process(), wait)?;
        Ok(FleetSession {
            inventory: Arc::new(inventory),
            hosts,
            state: SharedStateLock::new(lock),
        })
    }
}

impl FleetSession {
    /// Carries out `plan` and prints the per-host summary; failures are rendered and counted.
    pub(super) fn carry_out(
        &self,
        command: &str,
        ctx: &Context,
        runtime: &tokio::runtime::Runtime,
        plan: &crate::plan::Plan,
        operator_key: Option<String>,
        parallel: usize,
    ) -> miette::Result<usize> {
        let inv = self.inventory.clone();
        let state = self.state.snapshot();
        let providers =
            crate::provider::for_blocks(&inv, apply::provider_blocks(&inv, plan, &state))?;
        let exec = apply::Executor {
            inventory: inv,
            state: self.state.clone(),
            providers,
            operator_key,
            parallel,
        };
        let outcomes = runtime.block_on(apply::run(Arc::new(exec), plan));
        super::output(ctx.out.text(&format!("\n{}", crate::ui::report::apply(&outcomes))))?;
        super::output(ctx.out.event(&crate::ui::json::apply_summary(command, &outcomes)))?;
        let mut failed = 0;
        for o in &outcomes {
            if let Err(e) = &o.result {
                ctx.report_error(e);
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Runs the bootstrap pipeline (or the phases `options` selects) on every host, logging
    /// in with `operator_key` (else the repository's operator key), asking `confirm` before a
    /// machine is erased.
    pub fn bootstrap(
        &self,
        options: bootstrap::Options,
        operator_key: Option<std::path::PathBuf>,
        env: crate::keys::IdentityEnv,
        confirm: Arc<dyn bootstrap::Confirm>,
    ) -> miette::Result<Vec<HostReport>> {
        let providers = crate::provider::for_blocks(
            &self.inventory,
            self.hosts.iter().map(|h| h.provider.clone()),
        )?;
        let operator = Operator::load_or_create(&self.inventory.root, operator_key)?;
        let ctx = Arc::new(bootstrap::Context {
            inventory: self.inventory.clone(),
            state: self.state.clone(),
            providers,
            operator,
            options,
            env,
            confirm,
        });
        let hosts = self.hosts.clone();
        Ok(runtime()?.block_on(bootstrap::run_fleet(ctx, hosts)))
    }
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> miette::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| miette::miette!("cannot start the async runtime: {e}"))
}
