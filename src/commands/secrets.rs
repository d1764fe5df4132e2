//! `cairn secrets ...`: wiring between the CLI and `crate::secrets`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::SecretsCommand;
use crate::commands::Context;
use crate::keys::{Identities, IdentityEnv};
use crate::secrets::edit::{self, EditOutcome, EditRequest};
use crate::secrets::error::{Result, SecretsError};
use crate::secrets::file::EncryptionSpec;
use crate::secrets::{ops, rekey};

pub fn run(cmd: SecretsCommand, ctx: &Context) -> miette::Result<ExitCode> {
    Ok(run_inner(cmd, ctx)?)
}

fn abs(ctx: &Context, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        ctx.cwd.join(p)
    }
}

fn identities(env: &IdentityEnv) -> Identities {
    Identities::discover(env)
}

/// The creation rule for `path`, from `.sops.yaml` found from the working directory.
fn rule_spec(ctx: &Context, env: &IdentityEnv, path: &Path) -> Result<EncryptionSpec> {
    crate::secrets::rule_spec(&ctx.cwd, env.get("SOPS_CONFIG").map(Path::new), path)?
        .ok_or_else(|| SecretsError::NoRule { file: path.to_owned() })
}

fn run_inner(cmd: SecretsCommand, ctx: &Context) -> Result<ExitCode> {
    let env = IdentityEnv::from_process();
    match cmd {
        SecretsCommand::Decrypt(a) => {
            let path = abs(ctx, &a.file);
            let input = ops::format_for(&path, a.format.input_type.as_deref());
            let output = a
                .format
                .output_type
                .as_deref()
                .and_then(crate::secrets::Format::from_name)
                .unwrap_or(input);
            let ids = identities(&env);
            let bytes = ops::decrypt_to_bytes(
                &path,
                input,
                output,
                a.extract.as_deref(),
                a.ignore_mac,
                &ids,
            )?;
            match a.output {
                Some(out) => crate::util::atomic::write(&abs(ctx, &out), &bytes, 0o600)?,
                None => ctx.out.bytes(&bytes)?,
            }
        }
        SecretsCommand::Encrypt(a) => {
            let path = abs(ctx, &a.file);
            let input = ops::format_for(&path, a.format.input_type.as_deref());
            let output = a
                .format
                .output_type
                .as_deref()
                .and_then(crate::secrets::Format::from_name)
                .unwrap_or(input);
            let spec = match &a.age {
                Some(list) => ops::spec_from_age_list(list)?,
                None => rule_spec(ctx, &env, &path)?,
            };
            let bytes = ops::encrypt_to_bytes(&path, input, output, &spec)?;
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
            let format = ops::format_for(&path, a.input_type.as_deref());
            let ids = identities(&env);
            let editor = ["SOPS_EDITOR", "VISUAL", "EDITOR"]
                .iter()
                .find_map(|v| env.get(v).filter(|s| !s.trim().is_empty()).map(str::to_owned));
            let new_spec = || rule_spec(ctx, &env, &path);
            let req = EditRequest {
                path: &path,
                format,
                editor,
                temp_base: edit::private_temp_base(env.get("XDG_RUNTIME_DIR")),
                identities: &ids,
                new_file_spec: &new_spec,
                ignore_mac: a.ignore_mac,
                interactive: edit::stdin_is_terminal(),
            };
            match edit::edit(&req)? {
                EditOutcome::Unchanged => {
                    tracing::info!("{}: file has not changed, nothing written", a.file.display())
                }
                EditOutcome::Written => tracing::info!("{}: saved", a.file.display()),
                EditOutcome::Created => tracing::info!("{}: created", a.file.display()),
            }
        }
        SecretsCommand::Rekey(a) => {
            let (root, targets) = crate::secrets::rekey_targets(
                &ctx.cwd,
                env.get("SOPS_CONFIG").map(Path::new),
                &a.files.iter().map(|f| abs(ctx, f)).collect::<Vec<_>>(),
            )?;
            let ids = if a.dry_run { Identities::empty() } else { identities(&env) };
            let reports = rekey::rekey(&targets, &ids, a.rotate, a.dry_run);
            ctx.out.text(&ops::render_rekey(&reports, &root, a.dry_run))?;
            let removed = ops::removed_without_rotation(&reports);
            if !removed.is_empty() && !a.rotate {
                tracing::warn!(
                    "removed recipients ({}) can still decrypt the old versions of these files in git history, \
                     and the data keys they could read are unchanged; run `cairn secrets rekey --rotate` \
                     to give every file a new data key",
                    removed.iter().map(|r| crate::secrets::file::abbreviate(r)).collect::<Vec<_>>().join(", ")
                );
            }
            let failed = reports
                .iter()
                .filter(|r| matches!(r.status, rekey::RekeyStatus::Failed(_)))
                .count();
            if failed > 0 {
                return Err(SecretsError::RekeyFailed { failed, total: reports.len() });
            }
        }
        SecretsCommand::Keygen(a) => {
            let path = match a.output {
                Some(p) => abs(ctx, &p),
                None => ops::default_key_file(&env).ok_or(SecretsError::NoKeyPath)?,
            };
            let key = crate::keys::generate_age_identity();
            ops::keygen(&path, &key)?;
            tracing::info!("wrote the private key to {} (mode 0600)", path.display());
            ctx.out.text(&format!("{}\n", key.identity.to_public()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
