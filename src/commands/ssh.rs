//! `cairn ssh HOST [-- COMMAND...]`: an interactive session or one command, to the address
//! cairn recorded, pinning the host key of the newest phase it recorded.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::{KeyPhaseArg, SshArgs};
use crate::inventory;
use crate::reach::{self, Recorded, Route, Stage};
use crate::ssh::{self, Auth, ConnectOptions, Interactive, PtyRequest, RawTerminal, Session};

use super::Context;

/// Everything `cairn ssh` takes from its command line, the inventory, state and the
/// environment, resolved before connecting.
struct Settings {
    /// Where to connect and which key to pin, as [`reach`] decides.
    route: Route,
    auth: Auth,
    spec: Interactive,
    want_pty: bool,
}

impl Settings {
    fn resolve(args: &SshArgs, ctx: &Context) -> miette::Result<Self> {
        let inventory = ctx.load_inventory()?;
        let hosts = inventory::select(&inventory, std::slice::from_ref(&args.host))?;
        let [host] = hosts.as_slice() else {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            return Err(miette::miette!(
                help = "name one host",
                "`{}` matches {} hosts ({}); cairn ssh connects to one",
                args.host,
                names.len(),
                names.join(", ")
            ));
        };
        let state = ctx.open_state(&inventory)?;
        let data = state.read()?;
        let stage = args.phase.map(|p| match p {
            KeyPhaseArg::Stock => Stage::Stock,
            KeyPhaseArg::Installer => Stage::Installer,
            KeyPhaseArg::Installed => Stage::Installed,
        });
        let location = state.location();
        let recorded_host = data.hosts.get(host.name.as_str()).cloned().unwrap_or_default();
        let recorded = Recorded {
            host: host.name.as_str(),
            state: &recorded_host,
            location: &location,
            repository_key: None,
        };
        let mut route = reach::known_host(*host, &recorded, stage)?;
        if let Some(user) = &args.user {
            route.target.user = user.clone();
        }
        // The key bootstrap logs in with (`-i`/CAIRN_SSH_KEY, else the repository's operator
        // key), then what ssh would use.
        let auth = super::login::login_auth(&inventory.root, args.identity.as_ref())?;
        let interactive_terminal = std::io::stdin().is_terminal();
        let want_pty =
            !args.no_tty && (args.tty || (args.command.is_empty() && interactive_terminal));
        let spec = Interactive {
            command: (!args.command.is_empty()).then(|| args.command.join(" ")),
            pty: want_pty.then(|| PtyRequest {
                term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
                size: ssh::terminal_size().unwrap_or(ssh::TerminalSize { cols: 80, rows: 24 }),
            }),
        };
        Ok(Self { route, auth, spec, want_pty })
    }
}

pub fn run(args: &SshArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let Settings { route, auth, spec, want_pty } = Settings::resolve(args, ctx)?;
    let options = ConnectOptions {
        pinned_key_location: route.key_location.clone(),
        ..ConnectOptions::default()
    };
    let runtime = super::fleet::runtime()?;
    let result = runtime.block_on(async {
        let session = Session::connect(&route.target, &auth, &route.policy(), &options).await?;
        // Raw mode only once connected, so connection errors print on a normal terminal.
        let _raw = if want_pty { RawTerminal::enable() } else { None };
        let resize = ssh::watch_terminal_size();
        let code = session
            .interactive(
                &spec,
                tokio::io::stdin(),
                tokio::io::stdout(),
                tokio::io::stderr(),
                resize,
            )
            .await?;
        session.close().await;
        Ok::<u32, ssh::Error>(code)
    });
    // A pending read of stdin must not hold the process open after the session ended.
    runtime.shutdown_background();
    let code = result?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
