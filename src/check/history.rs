//! `secrets.private-key`: private keys in the files of the work tree and anywhere in the
//! history of the current branch.
//!
//! The history is read with two git processes streaming once: `git log --raw` names every
//! blob each commit added or changed (and the path it had), and one `git cat-file --batch`
//! hands over each distinct blob once; every blob is matched against the key patterns in
//! memory. Messages name the path, the commit and the kind of key, never the key.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use regex::bytes::Regex;

use super::git::{self, GIT_DEADLINE};
use super::repo::Scan;
use super::{CheckError, Finding, Report, RuleId};

/// Blobs larger than this are not read (no key file is that big).
const MAX_BLOB: u64 = 32 * 1024 * 1024;

fn patterns() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Bech32 upper case (no 1, B, I, O after the separator); PEM/OpenSSH headers
        // followed by a line of key material, so a header quoted in a document is not a key.
        Regex::new(concat!(
            r"(?P<age>AGE-SECRET-KEY-(?:PQ-)?1[02-9AC-HJ-NP-Z]{50,})",
            r"|(?P<pem>-----BEGIN (?P<label>(?:OPENSSH |RSA |DSA |EC |ENCRYPTED )?)PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:, -]{16,})",
        ))
        .expect("the key patterns compile")
    })
}

/// The first private key in `bytes`: what kind, and on which line.
pub fn find_key(bytes: &[u8]) -> Option<(&'static str, usize)> {
    let caps = patterns().captures(bytes)?;
    let m = caps.get(0)?;
    let kind = if caps.name("age").is_some() {
        "an age identity (AGE-SECRET-KEY-…)"
    } else {
        match caps.name("label").map(|l| l.as_bytes()) {
            Some(b"OPENSSH ") => "an OpenSSH private key",
            Some(b"RSA ") => "an RSA private key (PEM)",
            Some(b"EC ") => "an EC private key (PEM)",
            Some(b"DSA ") => "a DSA private key (PEM)",
            Some(b"ENCRYPTED ") => "an encrypted PEM private key",
            _ => "a PKCS#8 private key (PEM)",
        }
    };
    let line = bytes[..m.start()].iter().filter(|b| **b == b'\n').count() + 1;
    Some((kind, line))
}

/// `ssh_host_ed25519_key` and the like (the public halves end in `.pub`).
fn is_host_key_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("ssh_host_") && name.ends_with("_key")
}

fn looks_sops_encrypted(bytes: &[u8]) -> bool {
    bytes.windows(15).any(|w| w == b"ENC[AES256_GCM,")
}

const HINT: &str = "treat the key as compromised: replace it (for a host key, bootstrap its keys again; then `cairn secrets rekey --rotate`); deleting the file does not remove it from history (rewrite it with git filter-repo, then force-push)";

pub fn check(scan: &Scan<'_>, report: &mut Report) -> Result<(), CheckError> {
    work_tree(scan, &mut report.findings);
    match &scan.git {
        Some(repo) if repo.has_head() => history(scan, &mut report.findings),
        Some(_) => Ok(()),
        None => {
            report.skipped.push(super::Skipped {
                rule: format!("{} (history)", RuleId::SecretsPrivateKey),
                reason: "the repository is not a git work tree; only its files were searched"
                    .into(),
            });
            Ok(())
        }
    }
}

fn work_tree(scan: &Scan<'_>, out: &mut Vec<Finding>) {
    let hits = crate::util::parallel::map(&scan.files, crate::util::parallel::cores(), |rel| {
        let path = scan.root.join(rel);
        let meta = fs_err::metadata(&path).ok()?;
        if meta.len() > MAX_BLOB {
            return None;
        }
        let bytes = fs_err::read(&path).ok()?;
        if let Some((kind, line)) = find_key(&bytes) {
            return Some((kind, Some(line)));
        }
        if is_host_key_name(rel) && !looks_sops_encrypted(&bytes) {
            return Some(("an SSH host private key file that is not sops-encrypted", None));
        }
        None
    });
    for (rel, hit) in scan.files.iter().zip(hits) {
        let Some((kind, line)) = hit else { continue };
        out.push(
            Finding::new(RuleId::SecretsPrivateKey, format!("{rel} contains {kind}"))
                .file(rel.clone(), line)
                .hint(HINT),
        );
    }
}

/// One blob as first seen walking the branch from its oldest commit.
struct Introduced {
    commit: String,
    path: String,
}

fn history(scan: &Scan<'_>, out: &mut Vec<Finding>) -> Result<(), CheckError> {
    let repo = scan.git.as_ref().expect("checked by the caller");
    let log = git::git(
        &repo.top,
        &[
            "-c",
            "core.quotePath=off",
            "log",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "-r",
            "--root",
            "--diff-filter=AM",
            "--format=commit %H",
            "HEAD",
        ],
    )?;
    // Newest first: a later (older) line for the same blob overwrites, so each blob keeps
    // the commit that introduced it.
    let mut blobs: HashMap<String, Introduced> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut commit = String::new();
    for line in log.split(|b| *b == b'\n') {
        if let Some(c) = line.strip_prefix(b"commit ") {
            commit = String::from_utf8_lossy(c).into_owned();
            continue;
        }
        if !line.starts_with(b":") {
            continue;
        }
        let line = String::from_utf8_lossy(line);
        let Some((meta, path)) = line.split_once('\t') else { continue };
        let fields: Vec<&str> = meta.split(' ').collect();
        if fields.len() < 5 || !fields[1].starts_with("100") {
            continue; // symlinks, submodules
        }
        let blob = fields[3].to_owned();
        let entry = Introduced { commit: commit.clone(), path: path.to_owned() };
        if blobs.insert(blob.clone(), entry).is_none() {
            order.push(blob);
        }
    }
    tracing::debug!(blobs = order.len(), "history blobs to read");
    let hits = scan_blobs(&repo.top, &order, |blob| blobs.get(blob).map(|i| i.path.as_str()))?;
    let mut subjects: HashMap<String, String> = HashMap::new();
    for (blob, kind, line) in hits {
        let Some(intro) = blobs.get(&blob) else { continue };
        let subject = match subjects.get(&intro.commit) {
            Some(s) => s.clone(),
            None => {
                let s = git::git(&repo.top, &["log", "-1", "--format=%h (%as: %s)", &intro.commit])
                    .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
                    .unwrap_or_else(|_| intro.commit[..12.min(intro.commit.len())].to_owned());
                subjects.insert(intro.commit.clone(), s.clone());
                s
            }
        };
        let shown = repo.shown(&intro.path);
        let still = scan.files.contains(&shown);
        let tail = if still { "" } else { " (deleted since, but still in the branch's history)" };
        out.push(
            Finding::new(
                RuleId::SecretsPrivateKey,
                format!("{kind} was committed in {shown}, commit {subject}{tail}"),
            )
            .file(shown, line)
            .hint(HINT),
        );
    }
    Ok(())
}

/// A blob holding a key: its id, what kind of key, the line.
type BlobHit = (String, &'static str, Option<usize>);

/// Reads `blobs` through one `git cat-file --batch` and returns `(blob, kind, line)` for each
/// holding a key (or, at a host key's path, anything not sops-encrypted).
fn scan_blobs<'p>(
    top: &std::path::Path,
    blobs: &[String],
    path_of: impl Fn(&str) -> Option<&'p str>,
) -> Result<Vec<BlobHit>, CheckError> {
    if blobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(top).args(["cat-file", "--batch", "--buffer"]);
    let command = git::describe(&cmd);
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(
            |e| CheckError::Git {
                command: command.clone(),
                stderr: format!("cannot start it: {e}"),
            },
        )?;
    let mut stdin = child.stdin.take().expect("piped");
    let input: Vec<u8> = blobs.iter().flat_map(|b| format!("{b}\n").into_bytes()).collect();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The watchdog: git is killed (by its pid) if the whole read takes too long. Dropping
    // `done` (the read ended, or an early return) stops it at once.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || match finished.recv_timeout(GIT_DEADLINE) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            let _ = crate::util::process::signal(pid, libc::SIGKILL);
            true
        }
        _ => false,
    });
    let mut reader = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped"));
    let mut hits = Vec::new();
    let mut header = Vec::new();
    let mut content = Vec::new();
    let mut failure = None;
    for _ in blobs {
        header.clear();
        if reader
            .read_until(b'\n', &mut header)
            .map_err(|e| e.to_string())
            .map(|n| n == 0)
            .unwrap_or(true)
        {
            failure = Some("git cat-file stopped early".to_owned());
            break;
        }
        let text = String::from_utf8_lossy(&header).trim_end().to_owned();
        let fields: Vec<&str> = text.split(' ').collect();
        if fields.len() != 3 {
            // `<oid> missing`: a blob of a shallow or partial clone.
            continue;
        }
        let (oid, size) = (fields[0].to_owned(), fields[2].parse::<u64>().unwrap_or(0));
        content.clear();
        if let Err(e) = (&mut reader).take(size + 1).read_to_end(&mut content) {
            failure = Some(e.to_string());
            break;
        }
        content.truncate(size as usize);
        if size > MAX_BLOB {
            continue;
        }
        if let Some((kind, line)) = find_key(&content) {
            hits.push((oid, kind, Some(line)));
        } else if path_of(&oid).is_some_and(is_host_key_name) && !looks_sops_encrypted(&content) {
            hits.push((oid, "an SSH host private key file that is not sops-encrypted", None));
        }
    }
    drop(reader);
    let _ = writer.join();
    let status = git::wait(&mut child, GIT_DEADLINE, &command)?;
    drop(done);
    let killed = watchdog.join().unwrap_or(false);
    let stderr = err_reader.join().unwrap_or_default();
    if killed {
        return Err(CheckError::Deadline { command, deadline: GIT_DEADLINE });
    }
    if let Some(f) = failure.or_else(|| (!status.success()).then(|| stderr.trim().to_owned())) {
        return Err(CheckError::Git { command, stderr: f });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_age_and_pem_keys_but_not_mentions_of_them() {
        let age = format!("# created\n# public key: age1xyz\nAGE-SECRET-KEY-1{}\n", "Q".repeat(58));
        assert_eq!(find_key(age.as_bytes()), Some(("an age identity (AGE-SECRET-KEY-…)", 3)));
        let ssh =
            "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n";
        assert_eq!(find_key(ssh.as_bytes()), Some(("an OpenSSH private key", 2)));
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n";
        assert_eq!(find_key(pkcs8.as_bytes()).map(|k| k.0), Some("a PKCS#8 private key (PEM)"));
        // Documentation naming the formats is not a key.
        assert_eq!(
            find_key(b"keys look like AGE-SECRET-KEY-1... or -----BEGIN OPENSSH PRIVATE KEY-----"),
            None
        );
        // A sops-encrypted key file holds no key material in clear.
        assert_eq!(find_key(br#"{"data": "ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]"}"#), None);
        assert!(is_host_key_name("secrets/hosts/web1/ssh_host_ed25519_key"));
        assert!(!is_host_key_name("secrets/hosts/web1/ssh_host_ed25519_key.pub"));
    }
}
