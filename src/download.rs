//! Downloads pinned by checksum: the kexec installer bundle and the qemu provider's base
//! image, given by URL.
//!
//! A download lands in the cache (`$XDG_CACHE_HOME/cairn/`, else `~/.cache/cairn/`) under
//! its checksum, so a second run, another repository, or a renamed URL with the same content
//! reuse it. An interrupted download is resumed with an HTTP `Range` request. The file is
//! checked against the pinned sum before any use; a mismatch deletes what was downloaded.
//! Progress is reported as `tracing` events under [`TARGET`]; the UI renders them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tracing target of download progress events.
pub const TARGET: &str = "cairn::download";

/// Progress events are emitted each time this many more bytes arrived.
const PROGRESS_STEP: u64 = 4 * 1024 * 1024;
/// How long the server may stay silent (connecting, or between two chunks).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A pinned checksum.
#[derive(Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

/// Why a checksum setting is not a checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{algorithm} must be {digits} hexadecimal digits, got {got}")]
pub struct BadChecksum {
    pub algorithm: &'static str,
    pub digits: usize,
    pub got: String,
}

impl Checksum {
    /// A SHA-256 sum in hex (64 digits, either case).
    pub fn sha256(hex_digits: &str) -> Result<Self, BadChecksum> {
        let mut out = [0u8; 32];
        decode_hex("sha256", hex_digits, &mut out)?;
        Ok(Self::Sha256(out))
    }

    /// A SHA-512 sum in hex (128 digits), as Debian's `SHA512SUMS` lists them.
    pub fn sha512(hex_digits: &str) -> Result<Self, BadChecksum> {
        let mut out = [0u8; 64];
        decode_hex("sha512", hex_digits, &mut out)?;
        Ok(Self::Sha512(out))
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::Sha512(_) => "sha512",
        }
    }

    pub fn hex(&self) -> String {
        match self {
            Self::Sha256(b) => hex::encode(b),
            Self::Sha512(b) => hex::encode(b),
        }
    }

    fn hasher(&self) -> Hasher {
        match self {
            Self::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Self::Sha512(_) => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

fn decode_hex(algorithm: &'static str, s: &str, out: &mut [u8]) -> Result<(), BadChecksum> {
    let s = s.trim();
    let digits = out.len() * 2;
    let bad = || BadChecksum { algorithm, digits, got: shorten(s) };
    if s.len() != digits {
        return Err(bad());
    }
    hex::decode_to_slice(s, out).map_err(|_| bad())
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 20 {
        format!("{s:?}")
    } else {
        format!("{:?}… ({} characters)", s.chars().take(16).collect::<String>(), s.chars().count())
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> Checksum {
        match self {
            Hasher::Sha256(h) => Checksum::Sha256(h.finalize().into()),
            Hasher::Sha512(h) => Checksum::Sha512(h.finalize().into()),
        }
    }
}

/// A file to download and the sum it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub url: reqwest::Url,
    pub checksum: Checksum,
}

/// Where a file comes from: a path on this machine, or a pinned download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    Url(Pinned),
}

/// Why a download setting is not usable, before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("{url} is not a URL cairn can download from: {why}")]
    BadUrl { url: String, why: String },
    #[error("{key} = {url:?} has no pinned checksum")]
    NoChecksum { key: String, url: String },
    #[error("{key}_sha256 / {key}_sha512 is set, but {key} is a local path, not a URL")]
    ChecksumForPath { key: String },
}

impl SourceError {
    /// What the user should do.
    pub fn help(&self) -> String {
        match self {
            SourceError::BadUrl { .. } => {
                "use an https:// URL (plain http:// only to this machine: 127.0.0.1, ::1, \
                 localhost), or a path to a local file"
                    .into()
            }
            SourceError::NoChecksum { key, .. } => format!(
                "pin what the URL must serve: set {key}_sha256 = \"<64 hex digits>\" (or \
                 {key}_sha512) to the sum the project publishes next to the file"
            ),
            SourceError::ChecksumForPath { key } => {
                format!("remove the checksum, or set {key} to the URL it pins")
            }
        }
    }
}

impl Source {
    /// Resolves a setting `key` (`installer`, `image`) with the checksum written next to it:
    /// a URL needs one; anything else is a path relative to `root` and takes none.
    pub fn from_setting(
        key: &str,
        value: &str,
        checksum: Option<&Checksum>,
        root: &Path,
    ) -> Result<Self, SourceError> {
        if !looks_like_url(value) {
            if checksum.is_some() {
                return Err(SourceError::ChecksumForPath { key: key.into() });
            }
            return Ok(Source::Local(root.join(value)));
        }
        let url = check_url(value)?;
        let checksum = checksum
            .cloned()
            .ok_or_else(|| SourceError::NoChecksum { key: key.into(), url: value.into() })?;
        Ok(Source::Url(Pinned { url, checksum }))
    }

    /// What a user would recognize: the path or the URL.
    pub fn display(&self) -> String {
        match self {
            Source::Local(p) => p.display().to_string(),
            Source::Url(p) => p.url.to_string(),
        }
    }
}

fn looks_like_url(s: &str) -> bool {
    let s = s.trim_start();
    s.contains("://")
        && s.split("://").next().is_some_and(|scheme| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
        })
}

/// https anywhere; plain http only to this machine (tests, a local mirror).
fn check_url(s: &str) -> Result<reqwest::Url, SourceError> {
    let bad = |why: &str| SourceError::BadUrl { url: s.into(), why: why.into() };
    let url = reqwest::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(bad("plain http is only allowed to this machine; use https")),
        other => Err(bad(&format!("the scheme {other}:// is not supported"))),
    }
}

/// Whether `url` names this machine (a loopback address or `localhost`).
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// A failed download, naming the URL and what to do.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("{url} does not have the pinned checksum: expected {expected}, got {actual}")]
    #[diagnostic(
        code(cairn::download::mismatch),
        help(
            "the downloaded file was deleted and nothing was used. If the project re-published \
             the file, pin its new sum from the project's checksum file; otherwise the server \
             or a proxy served something else"
        )
    )]
    Mismatch { url: String, expected: String, actual: String },

    #[error("downloading {url}: {what}")]
    #[diagnostic(
        code(cairn::download::http),
        help("check the URL and the network; a new run resumes where this one stopped")
    )]
    Http { url: String, what: String },

    #[error("{what} {}", path.display())]
    #[diagnostic(
        code(cairn::download::io),
        help("check the permissions and free space of the download cache (XDG_CACHE_HOME)")
    )]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no download cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    #[diagnostic(
        code(cairn::download::no_cache),
        help("set XDG_CACHE_HOME to a directory cairn may write to")
    )]
    NoCacheDir,
}

/// `$XDG_CACHE_HOME/cairn`, else `$HOME/.cache/cairn`.
pub fn cache_dir() -> Result<PathBuf, DownloadError> {
    let from = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = from(std::env::var_os("XDG_CACHE_HOME")).filter(|p| p.is_absolute()) {
        return Ok(dir.join("cairn"));
    }
    from(std::env::var_os("HOME"))
        .map(|home| home.join(".cache").join("cairn"))
        .ok_or(DownloadError::NoCacheDir)
}

/// Where a pinned file lives in `cache`: a folder named by its checksum, holding the file
/// under the URL's last path segment (so tools and users see a sensible name).
pub fn cached_path(cache: &Path, pinned: &Pinned) -> PathBuf {
    let name = pinned
        .url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("download");
    cache.join(format!("{}-{}", pinned.checksum.algorithm(), pinned.checksum.hex())).join(name)
}

/// Makes `source` a verified local file: a local path as is (it must exist), a URL from the
/// cache (checked again) or downloaded into it, resuming a partial download, and checked
/// before it is returned.
pub async fn resolve(source: &Source, cache: &Path) -> Result<PathBuf, DownloadError> {
    match source {
        Source::Local(path) => Ok(path.clone()),
        Source::Url(pinned) => fetch(pinned, cache).await,
    }
}

/// Downloads `pinned` into `cache` (see [`resolve`]).
pub async fn fetch(pinned: &Pinned, cache: &Path) -> Result<PathBuf, DownloadError> {
    let path = cached_path(cache, pinned);
    let url = pinned.url.to_string();
    let io = |what: &str, p: &Path| {
        let (what, path) = (what.to_string(), p.to_path_buf());
        move |source| DownloadError::Io { what, path, source }
    };
    let dir = path.parent().unwrap_or(cache);
    tokio::fs::create_dir_all(dir).await.map_err(io("creating", dir))?;
    // One download of a file at a time, across tasks and processes; the others wait, then
    // find it in the cache.
    let _lock = lock(dir, &url).await?;
    if path.is_file() {
        let actual = hash_file(&path, &pinned.checksum).await.map_err(io("reading", &path))?;
        if actual == pinned.checksum {
            tracing::info!(target: TARGET, url = %url, step = "cached", path = %path.display(), "using the cached download");
            return Ok(path);
        }
        tracing::warn!(url = %url, path = %path.display(), "the cached file does not have the pinned checksum; downloading it again");
        tokio::fs::remove_file(&path).await.map_err(io("removing", &path))?;
    }
    let part = partial_path(&path);
    download(pinned, &part).await?;

    let actual = hash_file(&part, &pinned.checksum).await.map_err(io("reading", &part))?;
    if actual != pinned.checksum {
        tokio::fs::remove_file(&part).await.map_err(io("removing", &part))?;
        let _ = tokio::fs::remove_file(dir.join(LOCK_FILE)).await;
        let _ = tokio::fs::remove_dir(dir).await;
        return Err(DownloadError::Mismatch {
            url,
            expected: pinned.checksum.to_string(),
            actual: actual.to_string(),
        });
    }
    tokio::fs::rename(&part, &path).await.map_err(io("renaming the download to", &path))?;
    tracing::info!(target: TARGET, url = %url, step = "verified", path = %path.display(), checksum = %pinned.checksum, "download verified");
    Ok(path)
}

const LOCK_FILE: &str = ".lock";
/// How long to wait for another run downloading the same file.
const LOCK_WAIT: Duration = Duration::from_secs(3600);

/// Holds the download lock of one cache folder (an flock, released when dropped).
async fn lock(dir: &Path, url: &str) -> Result<std::fs::File, DownloadError> {
    let path = dir.join(LOCK_FILE);
    let io = |what: &str| {
        let (what, path) = (what.to_string(), path.clone());
        move |source| DownloadError::Io { what, path, source }
    };
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening the lock file"))?
        .into_parts()
        .0;
    let started = std::time::Instant::now();
    let mut said = false;
    while !crate::state::sys::try_lock_exclusive(&file).map_err(io("locking"))? {
        if started.elapsed() > LOCK_WAIT {
            return Err(DownloadError::Http {
                url: url.into(),
                what: format!(
                    "another run has been downloading it for over {} minutes (lock {})",
                    LOCK_WAIT.as_secs() / 60,
                    path.display()
                ),
            });
        }
        if !said {
            tracing::info!(url, "waiting for another download of the same file");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(file)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// Appends the rest of `pinned` to `part`, from where an earlier run stopped when the server
/// honours `Range`, else from the start.
async fn download(pinned: &Pinned, part: &Path) -> Result<(), DownloadError> {
    let url = pinned.url.to_string();
    let http = |what: String| DownloadError::Http { url: url.clone(), what };
    let io = |what: &'static str| {
        let path = part.to_path_buf();
        move |source| DownloadError::Io { what: what.into(), path, source }
    };
    let have = tokio::fs::metadata(part).await.map(|m| m.len()).unwrap_or(0);
    let client = reqwest::Client::builder()
        .connect_timeout(STALL_TIMEOUT)
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| http(format!("cannot set up the HTTP client: {e}")))?;
    let mut request = client.get(pinned.url.clone());
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = tokio::time::timeout(STALL_TIMEOUT, request.send())
        .await
        .map_err(|_| http(format!("no answer in {} s", STALL_TIMEOUT.as_secs())))?
        .map_err(|e| http(error_chain(&e)))?;
    let status = response.status();
    let resumed = have > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT;
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // The partial file is already complete (or longer than the file): check it as is.
        return Ok(());
    }
    if !status.is_success() {
        return Err(http(format!("the server answered {status}")));
    }
    let mut file = if resumed {
        tokio::fs::OpenOptions::new().append(true).open(part).await.map_err(io("opening"))?
    } else {
        tokio::fs::File::create(part).await.map_err(io("creating"))?
    };
    let mut done = if resumed { have } else { 0 };
    let total = response.content_length().map(|len| len + done);
    tracing::info!(
        target: TARGET,
        url = %url,
        step = "started",
        resumed_from = done,
        total = total.unwrap_or(0),
        "downloading"
    );
    let mut next_report = done + PROGRESS_STEP;
    // What arrived is kept (flushed and synced) even when the transfer breaks off: the next
    // run resumes after it.
    let received: Result<(), DownloadError> = async {
        loop {
            let chunk = tokio::time::timeout(STALL_TIMEOUT, response.chunk())
                .await
                .map_err(|_| {
                    http(format!(
                        "no data for {} s after {done} bytes; run again to resume",
                        STALL_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| {
                    http(format!("{} after {done} bytes; run again to resume", error_chain(&e)))
                })?;
            let Some(chunk) = chunk else { return Ok(()) };
            file.write_all(&chunk).await.map_err(io("writing"))?;
            done += chunk.len() as u64;
            if done >= next_report {
                next_report = done + PROGRESS_STEP;
                tracing::info!(target: TARGET, url = %url, step = "progress", bytes = done, total = total.unwrap_or(0));
            }
        }
    }
    .await;
    file.flush().await.map_err(io("writing"))?;
    file.sync_all().await.map_err(io("syncing"))?;
    received?;
    if let Some(total) = total.filter(|t| *t != done) {
        return Err(http(format!(
            "the connection ended after {done} of {total} bytes; run again to resume"
        )));
    }
    tracing::info!(target: TARGET, url = %url, step = "downloaded", bytes = done, total = total.unwrap_or(done));
    Ok(())
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// The checksum of a file, with the algorithm of `like`.
async fn hash_file(path: &Path, like: &Checksum) -> std::io::Result<Checksum> {
    let mut hasher = like.hasher();
    let mut file = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn checksums_parse_hex_of_the_right_length() {
        let sum = Checksum::sha256(SHA256_EMPTY).unwrap();
        assert_eq!(sum.to_string(), format!("sha256:{SHA256_EMPTY}"));
        assert_eq!(Checksum::sha256(&SHA256_EMPTY.to_uppercase()).unwrap(), sum);
        let short = Checksum::sha256("abc").unwrap_err();
        assert_eq!(short.to_string(), "sha256 must be 64 hexadecimal digits, got \"abc\"");
        assert!(Checksum::sha256(&"zz".repeat(32)).is_err());
        assert!(Checksum::sha512(SHA256_EMPTY).is_err());
        assert!(Checksum::sha512(&"ab".repeat(64)).is_ok());
    }

    #[test]
    fn settings_are_paths_or_pinned_urls() {
        let root = Path::new("/fleet");
        let sum = Checksum::sha256(SHA256_EMPTY).unwrap();
        let local = Source::from_setting("installer", "bundles/x.tar.gz", None, root);
        assert_eq!(local, Ok(Source::Local(PathBuf::from("/fleet/bundles/x.tar.gz"))));
        let url = "https://example.org/nixos-kexec-installer-x86_64-linux.tar.gz";
        let pinned = Source::from_setting("installer", url, Some(&sum), root);
        assert!(matches!(pinned, Ok(Source::Url(ref p)) if p.url.as_str() == url));
        let err = Source::from_setting("installer", url, None, root).unwrap_err();
        assert_eq!(err.to_string(), format!("installer = {url:?} has no pinned checksum"));
        assert!(err.help().contains("installer_sha256"));
        let err = Source::from_setting("image", "disk.qcow2", Some(&sum), root);
        assert_eq!(err, Err(SourceError::ChecksumForPath { key: "image".into() }));
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        let root = Path::new("/");
        let sum = Checksum::sha256(SHA256_EMPTY).unwrap();
        let pin = |u: &str| Source::from_setting("image", u, Some(&sum), root);
        assert!(pin("http://127.0.0.1:8080/a.qcow2").is_ok());
        assert!(pin("http://[::1]:8080/a.qcow2").is_ok());
        assert!(pin("http://localhost/a.qcow2").is_ok());
        let err = pin("http://mirror.example.org/a.qcow2").unwrap_err();
        assert!(err.to_string().contains("plain http is only allowed to this machine"), "{err}");
        assert!(pin("ftp://example.org/a.qcow2").is_err());
    }

    #[test]
    fn the_cache_is_keyed_by_checksum_and_named_after_the_url() {
        let pinned = Pinned {
            url: "https://example.org/x/debian.qcow2?sig=1".parse().unwrap(),
            checksum: Checksum::sha256(SHA256_EMPTY).unwrap(),
        };
        assert_eq!(
            cached_path(Path::new("/c"), &pinned),
            PathBuf::from(format!("/c/sha256-{SHA256_EMPTY}/debian.qcow2"))
        );
        assert_eq!(
            partial_path(&cached_path(Path::new("/c"), &pinned)),
            PathBuf::from(format!("/c/sha256-{SHA256_EMPTY}/debian.qcow2.part"))
        );
    }
}
