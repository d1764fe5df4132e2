//! The rules that read the hosts' NixOS configurations: `inventory.flake`, `nixos.ssh`,
//! `nixos.password-in-store` (and `gitops.comin`, once rings exist). One `nix eval` per flake
//! reads the few attributes they need for every host of it; without `nix` they are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::repo::Scan;
use super::{git, CheckError, Finding, Report, RuleId, Skipped};
use crate::inventory::Host;

/// How long one evaluation may take (a cold evaluation of nixpkgs takes a minute).
const EVAL_DEADLINE: Duration = Duration::from_secs(600);

/// `CAIRN_NIX` (set but empty: no nix), else `nix` on PATH.
pub fn find_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_NIX") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join("nix")).find(|p| p.is_file())
}

/// What the evaluation asks of each configuration. Missing options read as null (a
/// configuration that is not a full NixOS system still answers); `users` lists the users
/// with a clear-text password option set.
const APPLY: &str = r#"cs: builtins.mapAttrs (name: c:
  let cfg = c.config or {};
      users = cfg.users.users or {};
      ssh = cfg.services.openssh or {};
  in {
    hostName = cfg.networking.hostName or null;
    system = cfg.nixpkgs.hostPlatform.system or (cfg.nixpkgs.system or null);
    sshEnable = ssh.enable or null;
    passwordAuthentication = ssh.settings.PasswordAuthentication or null;
    kbdInteractiveAuthentication = ssh.settings.KbdInteractiveAuthentication or null;
    permitRootLogin = ssh.settings.PermitRootLogin or null;
    firewall = cfg.networking.firewall.enable or null;
    comin = let c = cfg.services.comin or null; in
      if c == null then null else {
        enable = c.enable or null;
        remotes = map (r: {
          url = r.url or null;
          branch = r.branches.main.name or null;
          token = r.auth.access_token_path or null;
        }) (c.remotes or [ ]);
      };
    tokenPath = if TOKENKEY == null then null else (cfg.sops.secrets.${TOKENKEY}.path or null);
    passwordUsers = builtins.filter
      (u: (users.${u}.password or null) != null || (users.${u}.initialPassword or null) != null)
      (builtins.attrNames users);
  }) (builtins.intersectAttrs (builtins.listToAttrs (map (n: { name = n; value = null; }) WANTED)) cs)"#;

fn apply_for(attrs: &[&str], token_key: Option<&str>) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let list: Vec<String> = attrs.iter().map(|a| quote(a)).collect();
    APPLY
        .replace("WANTED", &format!("[ {} ]", list.join(" ")))
        .replace("TOKENKEY", &token_key.map_or_else(|| "null".to_owned(), quote))
}

/// What a host's comin must say, from the inventory's `gitops` block and the host's ring.
#[derive(Debug, Clone)]
pub struct CominExpected {
    pub remote: String,
    pub branch: String,
    pub ring: String,
    /// Whether the inventory names a token file (then comin must read it from sops-nix).
    pub token: bool,
}

pub fn check(
    scan: &Scan<'_>,
    rules: &[RuleId],
    nix: Option<&Path>,
    report: &mut Report,
) -> Result<(), CheckError> {
    let mut rules: Vec<RuleId> = rules.to_vec();
    if scan.fleet.inventory.gitops.is_none() {
        if let Some(i) = rules.iter().position(|r| *r == RuleId::GitopsComin) {
            rules.remove(i);
            report.skipped.push(Skipped {
                rule: RuleId::GitopsComin.as_str().to_owned(),
                reason: "the inventory has no `gitops` block".into(),
            });
        }
    }
    if rules.is_empty() {
        return Ok(());
    }
    let Some(nix) = nix else {
        for r in rules {
            report.skipped.push(Skipped {
                rule: r.as_str().to_owned(),
                reason: "no nix to evaluate the flake with (none on PATH, or CAIRN_NIX set empty)"
                    .into(),
            });
        }
        return Ok(());
    };
    let inv = scan.fleet.inventory;
    let mut by_flake: BTreeMap<&str, Vec<&Host>> = BTreeMap::new();
    for host in &inv.hosts {
        if let Some(f) = &host.flake {
            by_flake.entry(f.flake.as_str()).or_default().push(host);
        }
    }
    let runner = crate::nix::Nix::new().program(nix).for_this_machine();
    for (flake, hosts) in by_flake {
        let attrs: Vec<&str> =
            hosts.iter().filter_map(|h| h.flake.as_ref()).map(|f| f.attr.as_str()).collect();
        let token_key = inv.gitops.as_ref().map(|g| g.token_key.as_str());
        let args = runner
            .eval_args(&format!("{flake}#nixosConfigurations"), &apply_for(&attrs, token_key));
        let mut cmd = std::process::Command::new(runner.program_path());
        cmd.args(&args).current_dir(&scan.root);
        let command = format!("nix eval {flake}#nixosConfigurations");
        let out = git::run(cmd, EVAL_DEADLINE)?;
        let parsed: Result<Value, String> = if out.success {
            serde_json::from_slice(&out.stdout).map_err(|e| format!("its output is not JSON: {e}"))
        } else {
            Err(tail(&out.stderr))
        };
        for host in hosts {
            let attr = host.flake.as_ref().map(|f| f.attr.as_str()).unwrap_or("");
            let found = match &parsed {
                Ok(v) => v
                    .get(attr)
                    .cloned()
                    .ok_or_else(|| format!("{flake} has no nixosConfigurations.{attr}")),
                Err(e) => Err(e.clone()),
            };
            let recorded_system = scan
                .fleet
                .state
                .hosts
                .get(host.name.as_str())
                .and_then(|s| s.provider_data.get("system"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let line = Some(host.span.line);
            let file = scan.inventory_file();
            let comin = inv.gitops.as_ref().and_then(|g| {
                inv.ring_of(host.name.as_str()).map(|r| CominExpected {
                    remote: g.remote.clone(),
                    branch: r.branch.clone(),
                    ring: r.name.to_string(),
                    token: g.token.is_some(),
                })
            });
            for f in
                findings(host, &rules, &command, found, recorded_system.as_deref(), comin.as_ref())
            {
                let f = if f.rule == RuleId::InventoryFlake.as_str() {
                    f.file(file.clone(), line)
                } else {
                    f
                };
                report.findings.push(f);
            }
        }
    }
    Ok(())
}

/// What is wrong with a host's comin settings, if anything.
fn comin_problem(v: &Value, want: &CominExpected) -> Option<String> {
    let comin = v.get("comin").filter(|c| !c.is_null());
    let Some(comin) = comin else {
        return Some("the configuration has no services.comin".into());
    };
    if comin.get("enable").and_then(Value::as_bool) != Some(true) {
        return Some("services.comin.enable is off".into());
    }
    let remotes: Vec<&Value> = comin
        .get("remotes")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let Some(remote) =
        remotes.iter().find(|r| r.get("url").and_then(Value::as_str) == Some(want.remote.as_str()))
    else {
        let urls: Vec<&str> =
            remotes.iter().filter_map(|r| r.get("url").and_then(Value::as_str)).collect();
        return Some(format!(
            "services.comin.remotes has no remote {} (gitops.remote); it has {}",
            want.remote,
            if urls.is_empty() { "none".to_owned() } else { urls.join(", ") }
        ));
    };
    let branch = remote.get("branch").and_then(Value::as_str);
    if branch != Some(want.branch.as_str()) {
        return Some(format!(
            "comin follows branch {} of {}, not the ring's {}",
            branch.unwrap_or("(none)"),
            want.remote,
            want.branch
        ));
    }
    if want.token {
        let token = remote.get("token").and_then(Value::as_str);
        let expected = v.get("tokenPath").and_then(Value::as_str);
        match (token, expected) {
            (None, _) => {
                return Some(
                    "comin's remote has no auth.access_token_path, but gitops.token names a token"
                        .into(),
                )
            }
            (Some(t), Some(e)) if t != e => {
                return Some(format!(
                    "comin reads its token from {t}, not the sops secret gitops.token names ({e})"
                ))
            }
            (Some(t), None) => {
                return Some(format!(
                "comin reads its token from {t}, but sops-nix declares no secret for gitops.token"
            ))
            }
            _ => {}
        }
    }
    None
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

/// The findings for one host from its evaluated attributes (or why it did not evaluate).
pub fn findings(
    host: &Host,
    rules: &[RuleId],
    command: &str,
    eval: Result<Value, String>,
    recorded_system: Option<&str>,
    comin: Option<&CominExpected>,
) -> Vec<Finding> {
    let name = host.name.as_str();
    let flake = host.flake.as_ref().map(|f| f.to_string()).unwrap_or_default();
    let mut out = Vec::new();
    let v = match eval {
        Ok(v) => v,
        Err(e) => {
            if rules.contains(&RuleId::InventoryFlake) {
                out.push(
                    Finding::new(RuleId::InventoryFlake, format!("{name}'s flake `{flake}` does not evaluate (`{command}`): {e}"))
                        .host(name)
                        .hint("fix the flake (run `nix eval` on it), or point the host's `flake` at an existing nixosConfigurations attribute"),
                );
            }
            return out;
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let b = |k: &str| v.get(k).and_then(Value::as_bool);
    if rules.contains(&RuleId::InventoryFlake) {
        if let Some(h) = s("hostName") {
            if h != name {
                out.push(
                    Finding::new(RuleId::InventoryFlake, format!("{name}'s configuration `{flake}` sets networking.hostName = \"{h}\""))
                        .host(name)
                        .hint(format!("set `networking.hostName = \"{name}\"` in the configuration, or rename the host (comin and sops-nix key off the name)")),
                );
            }
        }
        if let (Some(sys), Some(rec)) = (s("system"), recorded_system) {
            if sys != rec {
                out.push(
                    Finding::new(
                        RuleId::InventoryFlake,
                        format!(
                            "{name}'s configuration is built for {sys}, but the machine is {rec}"
                        ),
                    )
                    .host(name)
                    .hint("set nixpkgs.hostPlatform to the machine's system"),
                );
            }
        }
    }
    if rules.contains(&RuleId::NixosSsh) {
        let mut bad = Vec::new();
        if b("sshEnable") != Some(false) {
            if b("passwordAuthentication") == Some(true) {
                bad.push("services.openssh.settings.PasswordAuthentication = true");
            }
            if b("kbdInteractiveAuthentication") == Some(true) {
                bad.push("services.openssh.settings.KbdInteractiveAuthentication = true");
            }
            if s("permitRootLogin") == Some("yes") {
                bad.push("services.openssh.settings.PermitRootLogin = \"yes\"");
            }
        }
        if b("firewall") == Some(false) {
            bad.push("networking.firewall.enable = false");
        }
        if !bad.is_empty() {
            out.push(
                Finding::new(RuleId::NixosSsh, format!("{name}'s configuration `{flake}` has {}", bad.join(", ")))
                    .host(name)
                    .hint("log in with keys only: PasswordAuthentication and KbdInteractiveAuthentication false, PermitRootLogin \"prohibit-password\", and keep the firewall on"),
            );
        }
    }
    if let (true, Some(want)) = (rules.contains(&RuleId::GitopsComin), comin) {
        if let Some(problem) = comin_problem(&v, want) {
            out.push(
                Finding::new(RuleId::GitopsComin, format!("{name} (ring {}): {problem}", want.ring))
                    .host(name)
                    .hint("import cairn/fleet.json in the flake to set services.comin (as examples/flake does), and run `cairn gitops sync`"),
            );
        }
    }
    if rules.contains(&RuleId::NixosPasswordInStore) {
        let users: Vec<&str> = v
            .get("passwordUsers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !users.is_empty() {
            out.push(
                Finding::new(
                    RuleId::NixosPasswordInStore,
                    format!("{name}'s configuration sets a clear-text password (users.users.<name>.password or initialPassword) for {}: it ends up in the world-readable Nix store", users.join(", ")),
                )
                .host(name)
                .hint("use hashedPasswordFile pointing at a sops secret, or hashedPassword"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{load_str, LoadOptions};
    use serde_json::json;

    fn host() -> Host {
        let opts = LoadOptions { path: "cairn.hcl".into(), ..Default::default() };
        let inv = load_str(
            &opts,
            "provider \"existing\" \"dc\" {}\nhost \"web1\" {\n  provider = \"dc\"\n  address = \"192.0.2.1\"\n  flake = \".#web1\"\n}\n".into(),
        )
        .unwrap();
        inv.hosts[0].clone()
    }

    fn messages(v: Value, rules: &[RuleId], comin: Option<&CominExpected>) -> Vec<String> {
        findings(&host(), rules, "nix eval", Ok(v), None, comin)
            .into_iter()
            .map(|f| format!("{}: {}", f.rule, f.message))
            .collect()
    }

    #[test]
    fn evaluated_attributes_become_findings() {
        let all = [
            RuleId::InventoryFlake,
            RuleId::NixosSsh,
            RuleId::NixosPasswordInStore,
            RuleId::GitopsComin,
        ];
        let v = json!({
            "hostName": "web-1", "system": "x86_64-linux", "sshEnable": true,
            "passwordAuthentication": true, "kbdInteractiveAuthentication": false,
            "permitRootLogin": "yes", "firewall": false, "passwordUsers": ["root"],
            "comin": { "enable": true, "remotes": [{ "url": "https://forge/x.git", "branch": "main", "token": null }] },
            "tokenPath": "/run/secrets/comin-token",
        });
        let want = CominExpected {
            remote: "https://forge/x.git".into(),
            branch: "ring/dev".into(),
            ring: "dev".into(),
            token: true,
        };
        assert_eq!(
            messages(v, &all, Some(&want)),
            [
                "inventory.flake: web1's configuration `.#web1` sets networking.hostName = \"web-1\"",
                "nixos.ssh: web1's configuration `.#web1` has services.openssh.settings.PasswordAuthentication = true, services.openssh.settings.PermitRootLogin = \"yes\", networking.firewall.enable = false",
                "gitops.comin: web1 (ring dev): comin follows branch main of https://forge/x.git, not the ring's ring/dev",
                "nixos.password-in-store: web1's configuration sets a clear-text password (users.users.<name>.password or initialPassword) for root: it ends up in the world-readable Nix store",
            ]
        );
        let good = json!({
            "hostName": "web1", "sshEnable": true, "passwordAuthentication": false,
            "kbdInteractiveAuthentication": false, "permitRootLogin": "prohibit-password",
            "firewall": true, "passwordUsers": [],
            "comin": { "enable": true, "remotes": [{ "url": "https://forge/x.git", "branch": "ring/dev", "token": "/run/secrets/comin-token" }] },
            "tokenPath": "/run/secrets/comin-token",
        });
        assert!(messages(good, &all, Some(&want)).is_empty());
        let off = json!({ "comin": { "enable": false, "remotes": [] } });
        assert_eq!(
            messages(off, &[RuleId::GitopsComin], Some(&want)),
            ["gitops.comin: web1 (ring dev): services.comin.enable is off"]
        );
        let broken = findings(
            &host(),
            &all,
            "nix eval .#nixosConfigurations",
            Err("error: attribute 'web1' missing".into()),
            None,
            None,
        );
        assert_eq!(broken.len(), 1);
        assert!(broken[0].message.contains("does not evaluate"), "{}", broken[0].message);
    }
}
