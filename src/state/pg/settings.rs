//! The `conn` of a pg state: libpq's connection string, with the TLS settings tokio-postgres
//! does not take (`sslmode=verify-ca|verify-full`, `sslrootcert`) read here, and the rule that
//! a password never crosses a network in cleartext unless the user wrote `sslmode=disable`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as WireSslMode};
use tokio_postgres::Config;

use super::PgError;

/// How long to wait for the server when `conn` sets no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long data sent over TCP may stay unacknowledged before the connection counts as
/// broken, when `conn` sets no `tcp_user_timeout`: a commit fails instead of hanging on a
/// network that went away.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Server-side limits for every statement of cairn's sessions, unless `conn`'s `options` set
/// them: a statement or a row lock that hangs (a stuck server, another client holding a
/// row) fails the run with a message instead of holding it and the state lock forever. The
/// advisory-lock wait sets its own limits (`--lock-timeout`).
const SESSION_LIMITS: [(&str, &str); 2] = [("statement_timeout", "60s"), ("lock_timeout", "30s")];

/// libpq's `sslmode` values cairn takes (`allow` is left out: it tries cleartext first).
pub const SSL_MODES: &str = "disable, prefer, require, verify-ca, verify-full";

/// What `sslmode` asks of the connection, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, else cleartext; the certificate is not checked.
    Prefer,
    /// TLS or nothing; the certificate is not checked.
    Require,
    /// TLS, with a certificate that chains to `sslrootcert` (any host name).
    VerifyCa,
    /// TLS, with a certificate that chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PgError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(PgError::InvalidSslMode { value: other.to_owned(), allowed: SSL_MODES })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Which certificates a verify-* mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// The Mozilla roots built into cairn (webpki-roots): `sslrootcert` unset or `system`.
    Builtin,
    /// The PEM file `sslrootcert` names.
    File(PathBuf),
}

/// A parsed `conn`: tokio-postgres's config plus what cairn reads itself.
#[derive(Clone)]
pub struct ConnSettings {
    pub config: Config,
    pub ssl_mode: SslMode,
    pub roots: RootCerts,
}

impl ConnSettings {
    /// Parses `conn` and applies cairn's defaults (timeouts, application name, session
    /// limits). Refuses, before any connection, a password that could cross a network in
    /// cleartext.
    pub fn parse(conn: &str) -> Result<Self, PgError> {
        let (rest, ssl) = take_ssl_params(conn);
        let mut config: Config = rest.parse().map_err(PgError::InvalidConn)?;
        let written = ssl.mode.as_deref().map(SslMode::parse).transpose()?;
        let ssl_mode = written.unwrap_or(SslMode::Prefer);
        let roots = match ssl.rootcert.as_deref() {
            None | Some("system") => RootCerts::Builtin,
            Some(path) => RootCerts::File(PathBuf::from(path)),
        };
        // libpq never uses TLS on a unix socket; tokio-postgres would ask the server for it.
        let only_sockets = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(match ssl_mode {
            _ if only_sockets => WireSslMode::Disable,
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        });
        if ssl_mode == SslMode::Prefer && config.get_password().is_some() {
            if let Some(host) = first_remote_host(&config) {
                return Err(PgError::CleartextPassword { host });
            }
        }
        apply_defaults(&mut config);
        Ok(Self { config, ssl_mode, roots })
    }
}

fn apply_defaults(config: &mut Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("cairn");
    }
    let mut options = config.get_options().unwrap_or_default().to_owned();
    for (setting, value) in SESSION_LIMITS {
        if !options.contains(setting) {
            options = format!("{options} -c {setting}={value}").trim_start().to_owned();
        }
    }
    config.options(&options);
}

/// The first TCP destination that is not this machine, as written: the connection goes to
/// `hostaddr` where it is set, else to `host`. A host name other than `localhost` counts as
/// remote: it is not resolved to decide.
fn first_remote_host(config: &Config) -> Option<String> {
    if !config.get_hostaddrs().is_empty() {
        return config.get_hostaddrs().iter().find(|a| !a.is_loopback()).map(IpAddr::to_string);
    }
    config.get_hosts().iter().find_map(|h| match h {
        Host::Unix(_) => None,
        Host::Tcp(name) if is_loopback_name(name) => None,
        Host::Tcp(name) => Some(name.clone()),
    })
}

fn is_loopback_name(name: &str) -> bool {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// `sslmode` and `sslrootcert` as written (the last of each wins, as in libpq).
#[derive(Debug, Default, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    rootcert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` out of `conn` (key/value or URL form); the rest is
/// left as written for tokio-postgres, which reports its own errors in it.
fn take_ssl_params(conn: &str) -> (String, SslParams) {
    let mut ssl = SslParams::default();
    let mut keep = |key: &str, value: String| match key {
        "sslmode" => {
            ssl.mode = Some(value);
            false
        }
        "sslrootcert" => {
            ssl.rootcert = Some(value);
            false
        }
        _ => true,
    };
    let trimmed = conn.trim_start();
    let rest = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        match conn.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        keep(&percent_decode(k), percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => conn.to_owned(),
        }
    } else {
        match key_value_pairs(conn) {
            Some(pairs) => {
                let mut rest = String::new();
                for (key, value, raw) in pairs {
                    if keep(key, value) {
                        rest.push_str(raw);
                        rest.push(' ');
                    }
                }
                rest.trim_end().to_owned()
            }
            None => conn.to_owned(),
        }
    };
    (rest, ssl)
}

/// `%XX` decoding, without reading `+` as a space (a URL, not a form).
fn percent_decode(s: &str) -> String {
    let s = s.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (s[i], s.get(i + 1).copied().and_then(hex), s.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` pairs: `(key, unescaped value, the pair as written)`; `None` if the
/// string does not parse (tokio-postgres then says why).
fn key_value_pairs(conn: &str) -> Option<Vec<(&str, String, &str)>> {
    let mut pairs = Vec::new();
    let mut rest = conn;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(pairs);
        }
        let start = rest;
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start().strip_prefix('=')?.trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = rest.len();
        let mut closed = !quoted;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '\'' if quoted => {
                    end = i + 1;
                    closed = true;
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    end = i;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return None;
        }
        rest = &rest[end..];
        let raw = &start[..start.len() - rest.len()];
        pairs.push((key, value, raw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl(mode: Option<&str>, rootcert: Option<&str>) -> SslParams {
        SslParams { mode: mode.map(Into::into), rootcert: rootcert.map(Into::into) }
    }

    #[test]
    fn ssl_settings_are_taken_out_of_both_forms() {
        let (rest, got) = take_ssl_params(
            "host=db sslmode = verify-full  user=a sslrootcert='/etc/my ca.pem' password='x y'",
        );
        assert_eq!(rest, "host=db user=a password='x y'");
        assert_eq!(got, ssl(Some("verify-full"), Some("/etc/my ca.pem")));

        let (rest, got) = take_ssl_params(
            "postgresql://a:p%3Fw@db:5433/fleet?sslmode=verify-ca&application_name=x&sslrootcert=%2Fca.pem",
        );
        assert_eq!(rest, "postgresql://a:p%3Fw@db:5433/fleet?application_name=x");
        assert_eq!(got, ssl(Some("verify-ca"), Some("/ca.pem")));

        let (rest, got) = take_ssl_params("postgres://db/x?sslmode=require");
        assert_eq!((rest.as_str(), got), ("postgres://db/x", ssl(Some("require"), None)));
        let (rest, got) = take_ssl_params("host=db");
        assert_eq!((rest.as_str(), got), ("host=db", ssl(None, None)));
    }

    #[test]
    fn an_unknown_sslmode_names_the_value_and_the_allowed_ones() {
        for conn in ["host=db sslmode=verify_full", "postgresql://db/x?sslmode=verify_full"] {
            let err = ConnSettings::parse(conn).err().unwrap();
            let text = err.to_string();
            assert!(text.contains("`sslmode=verify_full`"), "{text}");
            assert!(text.contains(SSL_MODES), "{text}");
        }
    }

    #[test]
    fn modes_map_to_what_tokio_postgres_enforces() {
        let wire = |conn: &str| ConnSettings::parse(conn).unwrap().config.get_ssl_mode();
        assert_eq!(wire("host=db"), WireSslMode::Prefer);
        assert_eq!(wire("host=db sslmode=disable"), WireSslMode::Disable);
        assert_eq!(wire("host=db sslmode=verify-ca"), WireSslMode::Require);
        assert_eq!(wire("host=db sslmode=verify-full"), WireSslMode::Require);
        // libpq never uses TLS on a socket.
        assert_eq!(wire("host=/run/postgresql sslmode=require"), WireSslMode::Disable);
    }

    #[test]
    fn a_password_that_could_go_out_in_cleartext_is_refused_before_connecting() {
        for conn in [
            "host=192.0.2.1 user=a password=hunter2",
            "host=db.example.org user=a password=hunter2 sslmode=prefer",
            "postgresql://a:hunter2@192.0.2.1/fleet",
            "host=localhost hostaddr=192.0.2.1 password=hunter2",
            "host=127.0.0.1,192.0.2.1 password=hunter2",
        ] {
            let err = ConnSettings::parse(conn).err().unwrap_or_else(|| panic!("{conn}"));
            let text = format!("{err} {err:?}");
            assert!(matches!(err, PgError::CleartextPassword { .. }), "{conn}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        for conn in [
            "host=192.0.2.1 password=hunter2 sslmode=disable",
            "host=192.0.2.1 password=hunter2 sslmode=require",
            "host=192.0.2.1 password=hunter2 sslmode=verify-full",
            "host=127.0.0.1 password=hunter2",
            "host=::1 password=hunter2",
            "postgresql://a:hunter2@localhost/fleet",
            "host=/run/postgresql password=hunter2",
            "host=192.0.2.1 user=a",
        ] {
            assert!(ConnSettings::parse(conn).is_ok(), "{conn}");
        }
    }
}
