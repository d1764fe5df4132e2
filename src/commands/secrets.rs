//! `cairn secrets ...`: wiring between the CLI and `crate::secrets`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{SecretsCommand, SecretsFormatArgs, SecretsRekeyArgs};
use crate::commands::Context;
use crate::keys::{Identities, IdentityEnv};
use crate::secrets::edit::{self, EditOutcome, EditRequest};
use crate::secrets::error::{Result, SecretsError};
use crate::secrets::rules::SopsConfig;
use crate::secrets::{ops, rekey, EncryptionSpec, Format};

pub fn run(cmd: SecretsCommand, ctx: &Context) -> miette::Result<ExitCode> {
    let env = IdentityEnv::from_process();
    match cmd {
        SecretsCommand::Rekey(a) => run_rekey(&a, ctx, &env),
        other => {
            if matches!(other, SecretsCommand::Edit(_) | SecretsCommand::Encrypt(_)) {
                sync_rules(ctx)?;
            }
            Ok(run_file_command(other, ctx, &env)?)
        }
    }
}

fn abs(ctx: &Context, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        ctx.cwd.join(p)
    }
}

/// The `.sops.yaml` sops would use here (`SOPS_CONFIG`, else found from the working directory).
fn config(ctx: &Context, env: &IdentityEnv) -> Result<Option<SopsConfig>> {
    crate::secrets::load_config(&ctx.cwd, env.get("SOPS_CONFIG").map(Path::new))
}

/// The creation rule for `path`.
fn rule_spec(ctx: &Context, config: Option<&SopsConfig>, path: &Path) -> Result<EncryptionSpec> {
    let rule = match config {
        Some(c) => c.rule_for(path, &ctx.cwd)?,
        None => None,
    };
    rule.map(|r| r.encryption_spec()).ok_or_else(|| SecretsError::NoRule { file: path.to_owned() })
}

/// `--input-type`/`--output-type`, else the extension (output: the input's format).
fn formats(path: &Path, args: &SecretsFormatArgs) -> (Format, Format) {
    let input = ops::format_for(path, args.input_type);
    let output = args.output_type.unwrap_or(input);
    (input, output)
}

fn run_file_command(cmd: SecretsCommand, ctx: &Context, env: &IdentityEnv) -> Result<ExitCode> {
    let config = config(ctx, env)?;
    let stores = config.as_ref().map(|c| c.stores.clone()).unwrap_or_default();
    match cmd {
        SecretsCommand::Decrypt(a) => {
            let path = abs(ctx, &a.file);
            let (input, output) = formats(&path, &a.format);
            let ids = Identities::discover(env);
            let bytes = ops::decrypt_to_bytes(
                &path,
                input,
                output,
                a.extract.as_deref(),
                a.ignore_mac,
                &ids,
                &stores,
            )?;
            match a.output {
                Some(out) => crate::util::atomic::write(&abs(ctx, &out), &bytes, 0o600)?,
                None => ctx.out.bytes(&bytes)?,
            }
        }
        SecretsCommand::Encrypt(a) => {
            let path = abs(ctx, &a.file);
            let (input, output) = formats(&path, &a.format);
            let spec = match &a.age {
                Some(list) => ops::spec_from_age_list(list)?,
                None => rule_spec(ctx, config.as_ref(), &path)?,
            };
            let bytes = ops::encrypt_to_bytes(&path, input, output, &spec, &stores)?;
            if a.in_place {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs_err::metadata(&path)?.permissions().mode() & 0o7777;
                crate::util::atomic::write(&path, &bytes, mode)?;
                tracing::info!("encrypted {} in place", a.file.display());
            } else if let Some(out) = a.output {
                crate::util::atomic::write(&abs(ctx, &out), &bytes, 0o644)?;
            } else {
                ctx.out.bytes(&bytes)?;
            }
        }
        SecretsCommand::Edit(a) => {
            let path = abs(ctx, &a.file);
            let format = ops::format_for(&path, a.input_type);
            let ids = Identities::discover(env);
            let editor = ["SOPS_EDITOR", "VISUAL", "EDITOR"]
                .iter()
                .find_map(|v| env.get(v).filter(|s| !s.trim().is_empty()).map(str::to_owned));
            let new_spec = || rule_spec(ctx, config.as_ref(), &path);
            let req = EditRequest {
                path: &path,
                format,
                editor,
                temp_base: edit::private_temp_base(env.get("XDG_RUNTIME_DIR")),
                allow_disk_temp: a.allow_disk_temp,
                identities: &ids,
                new_file_spec: &new_spec,
                ignore_mac: a.ignore_mac,
                interactive: edit::stdin_is_terminal(),
                stores: &stores,
            };
            match edit::edit(&req)? {
                EditOutcome::Unchanged => {
                    tracing::info!("{}: file has not changed, nothing written", a.file.display())
                }
                EditOutcome::Written => tracing::info!("{}: saved", a.file.display()),
                EditOutcome::Created => tracing::info!("{}: created", a.file.display()),
            }
        }
        SecretsCommand::Keygen(a) => {
            let path = match a.output {
                Some(p) => abs(ctx, &p),
                None => ops::default_key_file(env).ok_or(SecretsError::NoKeyPath)?,
            };
            let key = if a.pq {
                crate::keys::generate_post_quantum_age_identity()
            } else {
                crate::keys::generate_age_identity()
            };
            ops::keygen(&path, &key)?;
            tracing::info!("wrote the private key to {} (mode 0600)", path.display());
            ctx.out.text(&format!("{}\n", key.identity.to_public()))?;
        }
        SecretsCommand::Rekey(_) => unreachable!("handled by run_rekey"),
    }
    Ok(ExitCode::SUCCESS)
}

/// In a repository whose inventory declares secrets, `.sops.yaml` follows the inventory
/// before a file is created or encrypted, so the file gets the admins and hosts cairn.hcl
/// names (right after `cairn init` there is no `.sops.yaml` yet).
fn sync_rules(ctx: &Context) -> miette::Result<()> {
    if ctx.inventory.is_none() && crate::inventory::discover(&ctx.cwd).is_none() {
        return Ok(());
    }
    let inv = ctx.load_inventory()?;
    let state = ctx.open_state(&inv)?.read()?;
    let lookup = |h: &crate::inventory::HostName| {
        state.hosts.get(h.as_str()).and_then(|s| s.age_recipient.clone())
    };
    if rekey::sync_sops_yaml(&inv, &lookup)? {
        tracing::info!("wrote .sops.yaml from cairn.hcl's admins and secrets rules");
    }
    Ok(())
}

/// With an inventory that declares secrets, `.sops.yaml` is regenerated from it first (hosts'
/// recipients from state), so the files follow cairn.hcl; otherwise `.sops.yaml` as it is.
fn run_rekey(a: &SecretsRekeyArgs, ctx: &Context, env: &IdentityEnv) -> miette::Result<ExitCode> {
    let files: Vec<PathBuf> = a.files.iter().map(|f| abs(ctx, f)).collect();
    let managed = if ctx.inventory.is_some() || crate::inventory::discover(&ctx.cwd).is_some() {
        let inv = ctx.load_inventory()?;
        let state = ctx.open_state(&inv)?.read()?;
        let lookup = |h: &crate::inventory::HostName| {
            state.hosts.get(h.as_str()).and_then(|s| s.age_recipient.clone())
        };
        rekey::plan_from_inventory(&inv, &lookup, &ctx.cwd, &files, a.dry_run)?
    } else {
        None
    };
    let mut text = String::new();
    let plan = match managed {
        Some((update, plan)) => {
            text.push_str(&ops::render_sops_yaml_update(&update, &plan.root, a.dry_run));
            plan
        }
        None => {
            crate::secrets::rekey_targets(&ctx.cwd, env.get("SOPS_CONFIG").map(Path::new), &files)?
        }
    };
    let ids = if a.dry_run { Identities::empty() } else { Identities::discover(env) };
    let reports = rekey::rekey(&plan, &ids, a.rotate, a.dry_run);
    text.push_str(&ops::render_rekey(&reports, &plan.root, a.dry_run));
    ctx.out.text(&text).map_err(SecretsError::from)?;
    let removed = ops::removed_without_rotation(&reports);
    if !removed.is_empty() && !a.rotate {
        tracing::warn!(
            "removed recipients ({}) can still decrypt the old versions of these files in git history, \
             and the data keys they could read are unchanged; run `cairn secrets rekey --rotate` \
             to give every file a new data key",
            removed.iter().map(|r| crate::keys::abbreviate(r)).collect::<Vec<_>>().join(", ")
        );
    }
    let failed =
        reports.iter().filter(|r| matches!(r.status, rekey::RekeyStatus::Failed(_))).count();
    if failed > 0 {
        return Err(SecretsError::RekeyFailed { failed, total: reports.len() }.into());
    }
    Ok(ExitCode::SUCCESS)
}
