//! Shared helpers for the secrets tests: locating the real sops 3.11 and age binaries,
//! making age keys, and running sops with an explicit environment.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Finds sops: `CAIRN_TEST_SOPS`, then `.ci/venv/bin/sops` in the crate, then PATH.
/// With `CI=true` a missing sops fails the test; otherwise the test is skipped loudly.
pub fn sops_path() -> Option<PathBuf> {
    if let Some(found) = super::tools::find_sops() {
        return Some(found);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("sops 3.11 not found (CAIRN_TEST_SOPS, .ci/venv/bin/sops, PATH) and CI=true");
    }
    eprintln!("SKIPPED: sops not found (set CAIRN_TEST_SOPS or run .ci/install)");
    None
}

/// A scratch directory with age keys and a sops runner whose environment is set explicitly.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub sops: PathBuf,
}

pub struct AgeKey {
    pub identity_file: PathBuf,
    pub recipient: String,
}

impl Lab {
    pub fn new() -> Option<Self> {
        let sops = sops_path()?;
        Some(Self { dir: tempfile::tempdir().unwrap(), sops })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh age key made with the real `age-keygen`.
    pub fn age_key(&self, name: &str) -> AgeKey {
        let identity_file = self.path(&format!("{name}.agekey"));
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&identity_file)
            .output()
            .expect("age-keygen runs");
        assert!(out.status.success(), "age-keygen: {}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new("age-keygen").arg("-y").arg(&identity_file).output().unwrap();
        assert!(out.status.success());
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        AgeKey { identity_file, recipient }
    }

    /// Runs sops in `cwd` with only the variables given (plus PATH, HOME and config dirs
    /// pointing into the lab so no real key is picked up).
    pub fn sops_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let home = self.path("home");
        fs_err::create_dir_all(&home).unwrap();
        let mut cmd = Command::new(&self.sops);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("sops runs")
    }

    pub fn sops(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.sops_in(self.dir.path(), args, env)
    }

    /// `sops decrypt` that must succeed; returns stdout.
    pub fn sops_decrypt(&self, file: &Path, key: &Path, extra: &[&str]) -> Vec<u8> {
        let mut args = vec!["decrypt"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        let out = self.sops(&args, &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())]);
        assert!(
            out.status.success(),
            "sops decrypt {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// Runs the cairn binary in `cwd` with a clean environment (a home of the lab's own, no
/// colour, no stdin) and `env` on top.
pub fn cairn(lab: &Lab, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = lab.path("home");
    fs_err::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cairn runs")
}

/// Replaces every `ENC[...]` with `ENC(<type>)` so two encryptions of the same plaintext
/// compare equal when the same leaves were encrypted with the same types.
pub fn mask_ciphertexts(text: &str) -> String {
    let re = regex::Regex::new(r"ENC\[AES256_GCM,data:[^,]*,iv:[^,]*,tag:[^,]*,type:([a-z]+)\]")
        .unwrap();
    re.replace_all(text, "ENC($1)").into_owned()
}

/// The file without its metadata, for structure comparisons.
pub fn without_metadata(text: &str, format: &str) -> String {
    match format {
        "dotenv" => {
            text.lines().filter(|l| !l.starts_with("sops_")).map(|l| format!("{l}\n")).collect()
        }
        "ini" => text.split("[sops]").next().unwrap().to_owned(),
        "yaml" => text.split("\nsops:\n").next().unwrap().to_owned(),
        _ => {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut v = v;
            v.as_object_mut().unwrap().remove("sops");
            serde_json::to_string_pretty(&v).unwrap()
        }
    }
}
