//! `cairn bootstrap host NAME | all | @tag`: the whole pipeline for the selected hosts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::Context;
use crate::bootstrap::confirm::{Answer, Confirm, Erasure, FirstKey};
use crate::bootstrap::{self, HostReport};
use crate::cli::BootstrapArgs;
use crate::keys::IdentityEnv;
use crate::ui::Output;

/// Everything `cairn bootstrap` takes from its command line and the environment, resolved
/// before any work.
struct Settings {
    selectors: Vec<String>,
    options: bootstrap::Options,
    /// `CAIRN_SSH_KEY`: the operator key to log in with instead of the repository's.
    operator_key: Option<PathBuf>,
    /// The environment secrets are decrypted with and `CAIRN_INSTALLER` comes from.
    env: IdentityEnv,
    /// `--yes`: erase machines without asking.
    yes: bool,
}

impl Settings {
    fn resolve(args: &BootstrapArgs, env: IdentityEnv) -> miette::Result<Self> {
        let phases = match &args.phases {
            Some(list) => {
                Some(bootstrap::phase::parse_list(list).map_err(|e| miette::miette!("{e}"))?)
            }
            None => None,
        };
        let mut options = bootstrap::Options {
            phases,
            parallel: args.parallel,
            installer: args.installer.clone(),
            reinstall: args.reinstall,
            trust_host_key: args.trust_host_key.clone(),
            ..Default::default()
        };
        options.timeouts.0.extend(args.timeouts.iter().copied());
        Ok(Self {
            selectors: args.selectors(),
            options,
            operator_key: super::login::operator_key_override(&env),
            env,
            yes: args.yes,
        })
    }
}

pub fn run(args: &BootstrapArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let settings = Settings::resolve(args, IdentityEnv::from_process())?;
    let session = ctx.fleet_session(&settings.selectors)?;
    // Before any phase: nothing is touched when the check finds errors.
    let names: Vec<_> = session.hosts.iter().map(|h| h.name.clone()).collect();
    super::check::gate(&session.inventory, &session.state.snapshot(), &names, args.skip_check)?;
    let confirm: Arc<dyn Confirm> = Arc::new(AskOnTerminal {
        out: ctx.out,
        erase_agreed: settings.yes,
        one_at_a_time: Mutex::new(()),
    });
    let reports =
        session.bootstrap(settings.options, settings.operator_key, settings.env, confirm)?;
    render_summary(ctx, &reports, args.timings)?;
    first_pull(ctx, &session.inventory, &reports, args.commit)?;
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What the hosts that got their keys need committed and pushed before their agent pulls.
fn first_pull(
    ctx: &Context,
    inv: &crate::inventory::Inventory,
    reports: &[HostReport],
    commit: bool,
) -> miette::Result<()> {
    let hosts: Vec<String> =
        reports.iter().filter(|r| r.result.is_ok()).map(|r| r.host.clone()).collect();
    let check = crate::gitops::first_pull::check(inv, &hosts, commit);
    let Some(report) = super::fleet::runtime()?.block_on(check)? else { return Ok(()) };
    if report.is_clear() && report.committed.is_none() {
        return Ok(());
    }
    ctx.out
        .text(&crate::ui::report::first_pull(&hosts, &report))
        .map_err(|e| miette::miette!("writing the summary: {e}"))
}

/// Asks on the terminal before a machine is erased (unless `--yes` agreed already) and
/// before a first-seen host key is trusted, one host at a time; without a terminal nobody
/// can agree, so it refuses.
struct AskOnTerminal {
    out: Output,
    erase_agreed: bool,
    one_at_a_time: Mutex<()>,
}

impl AskOnTerminal {
    fn ask(&self, question: &str, accepted: &[&str]) -> Answer {
        if !std::io::stdin().is_terminal() {
            return Answer::NoTerminal;
        }
        let _asking = self.one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        match crate::ui::progress::suspended(|| self.out.prompt(question)) {
            Ok(answer) if accepted.contains(&answer.trim()) => Answer::Yes,
            Ok(_) | Err(_) => Answer::No,
        }
    }
}

impl Confirm for AskOnTerminal {
    fn erase(&self, what: &Erasure) -> Answer {
        if self.erase_agreed {
            return Answer::Yes;
        }
        self.ask(&erase_question(what), &[what.host.as_str(), "yes"])
    }

    fn trust_host_key(&self, what: &FirstKey) -> Answer {
        let question = format!(
            "\n{host}: {address} presents a host key nobody has confirmed yet:\n  {algorithm} \
             {fingerprint}\nCompare it with the machine's own (on its console: `ssh-keygen -lf \
             /etc/ssh/ssh_host_ed25519_key.pub`).\nType `yes` if they match: ",
            host = what.host,
            address = what.address,
            algorithm = what.algorithm,
            fingerprint = what.fingerprint,
        );
        self.ask(&question, &["yes"])
    }
}

/// The question before the kexec phase: which machine, where, and which disk is lost.
fn erase_question(what: &Erasure) -> String {
    let machine = match &what.machine {
        Some(id) => format!("{}, machine {id}", what.provider),
        None => what.provider.clone(),
    };
    format!(
        "\n{host}: cairn is about to PERMANENTLY ERASE this machine:\n  \
         host:     {host}\n  address:  {address}\n  provider: {machine}\n  disk:     {disks}\n\
         The running system is replaced by the installer, then the disk is partitioned: \
         everything on it is lost.\nType the host's name ({host}) or `yes` to go on: ",
        host = what.host,
        address = what.address,
        disks = what.disks.join(", "),
    )
}

/// The summary, then each failure rendered in full.
fn render_summary(ctx: &Context, reports: &[HostReport], timings: bool) -> miette::Result<()> {
    let out = crate::ui::report::bootstrap(reports, timings);
    ctx.out.text(&out).map_err(|e| miette::miette!("writing the summary: {e}"))?;
    ctx.out
        .event(&crate::ui::json::bootstrap_summary(reports))
        .map_err(|e| miette::miette!("writing the summary: {e}"))?;
    for r in reports {
        if let Err(e) = &r.result {
            ctx.report_error(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bootstrap::Phase;
    use crate::inventory::Wait;

    fn args(phases: Option<&str>) -> BootstrapArgs {
        use clap::Parser as _;
        let mut line = vec!["cairn", "bootstrap", "host", "web1", "--parallel", "2"];
        line.extend(["--timeout", "kexec=10m"]);
        if let Some(list) = phases {
            line.extend(["--phases", list]);
        }
        match crate::cli::Cli::try_parse_from(line).unwrap().command {
            crate::cli::Command::Bootstrap(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn settings_are_resolved_from_the_command_line_and_the_environment() {
        let mut env = IdentityEnv::default();
        env.set("CAIRN_SSH_KEY", "/keys/op");
        let s = Settings::resolve(&args(Some("copy,kexec")), env).unwrap();
        assert_eq!(s.selectors, ["web1"]);
        assert_eq!(s.options.phases, Some(vec![Phase::Kexec, Phase::Copy]));
        assert_eq!(s.options.parallel, 2);
        assert_eq!(s.options.timeouts.get(Wait::Kexec), Some(Duration::from_secs(600)));
        assert_eq!(s.operator_key, Some(PathBuf::from("/keys/op")));

        let s = Settings::resolve(&args(None), IdentityEnv::default()).unwrap();
        assert_eq!((s.options.phases, s.operator_key), (None, None));
    }

    #[test]
    fn the_erase_question_names_host_address_machine_and_disk() {
        let q = erase_question(&Erasure {
            host: "web1".into(),
            address: "root@203.0.113.7:22".into(),
            provider: "hcloud.cloud".into(),
            machine: Some("42".into()),
            disks: vec!["/dev/sda".into()],
        });
        for part in [
            "web1: cairn is about to PERMANENTLY ERASE this machine",
            "address:  root@203.0.113.7:22",
            "provider: hcloud.cloud, machine 42",
            "disk:     /dev/sda",
            "Type the host's name (web1) or `yes`",
        ] {
            assert!(q.contains(part), "{part}:\n{q}");
        }
    }

    #[test]
    fn an_unknown_phase_is_refused_before_any_work() {
        let Err(err) = Settings::resolve(&args(Some("kexec,format")), IdentityEnv::default())
        else {
            panic!("an unknown phase was accepted");
        };
        assert!(err.to_string().starts_with("unknown phase `format`"), "{err}");
    }
}
