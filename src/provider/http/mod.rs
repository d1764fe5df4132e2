//! The HTTP client every cloud provider shares: bearer-token auth (JSON APIs such as Hetzner's)
//! or AWS Signature Version 4 (the EC2 Query API: form-encoded POSTs, XML answers), connect
//! and request timeouts, retries with capped exponential backoff and jitter (on 429, 5xx, 409
//! `conflict`, 423 `locked`, AWS throttling codes and timeouts, honouring `Retry-After` and
//! `RateLimit-Reset`), one debug line per request, and API errors turned into messages a user
//! can act on.
//!
//! The token lives only in the `Authorization` header (marked sensitive); an AWS secret key
//! only inside the signer. Neither appears in `Debug` output, logs or errors, and any response
//! text quoted in an error is scrubbed of them.
//!
//! `sigv4` signs for AWS, `retry` decides when and how long to wait, `errors` reads both
//! vendors' error dialects.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::inventory::Sensitive;

mod errors;
mod retry;
mod sigv4;
mod transport;

pub use errors::AWS_AUTH_CODES;
use errors::*;
use retry::*;
pub use sigv4::{AwsCredentials, SigningScope};
pub use transport::MAX_BODY;
use transport::{read_capped, same_origin_redirects};

/// How hard to retry. The default follows Hetzner's official clients: five retries, the
/// delay doubling from one second, never more than a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Timeouts and retries of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// For the whole exchange of one attempt, body included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Which API a client talks to, for messages: its name, the environment variable users keep
/// its token in, where they create one, and how it reports errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub token_env: &'static str,
    pub token_howto: &'static str,
    pub dialect: Dialect,
}

/// How an API shapes its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// JSON bodies; errors as `{"error": {"code", "message", "details"}}` (Hetzner Cloud).
    Hetzner,
    /// The AWS Query API: form-encoded requests, XML answers; errors as
    /// `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>` (EC2) or
    /// `<ErrorResponse><Error>…</Error></ErrorResponse>` (IAM, STS).
    AwsQuery,
}

pub const HETZNER_CLOUD: Service = Service {
    name: "Hetzner Cloud",
    token_env: "HCLOUD_TOKEN",
    token_howto: "create a read/write API token in the Cloud Console (your project → Security → \
                  API tokens)",
    dialect: Dialect::Hetzner,
};

pub const AWS_EC2: Service = Service {
    name: "AWS EC2",
    token_env: "AWS_SECRET_ACCESS_KEY",
    token_howto: "create an access key in the IAM console (Users → your user → Security \
                  credentials → Create access key)",
    dialect: Dialect::AwsQuery,
};

/// An AWS access key, for SigV4. `Debug` shows the key id, never the secret.
#[derive(Clone)]
/// An error answer from the API.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{service} refused {request}: {message} ({status} {code}{retried})")]
#[diagnostic(help("{help}"))]
pub struct ApiError {
    pub service: &'static str,
    /// What was asked, for messages: `GET /servers`, or the AWS action (`RunInstances`).
    pub request: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The API's error code (`invalid_input`, `locked`...), or the HTTP reason.
    pub code: String,
    /// The API's message, with the fields `invalid_input` names.
    pub message: String,
    /// The fields `invalid_input` names.
    pub fields: Vec<String>,
    pub correlation_id: Option<String>,
    /// `", after 5 retries"` or empty.
    pub retried: String,
    pub help: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum HttpError {
    /// The API answered with an error.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Api(Box<ApiError>),
    /// No answer: connection refused, TLS failure, timeout.
    #[error("{service}: {method} {url} got no answer{timed_out}{retried}")]
    #[diagnostic(help(
        "check the network and the provider's `endpoint`; cairn retried timeouts before giving up"
    ))]
    Transport {
        service: &'static str,
        method: String,
        url: String,
        /// `" (timed out)"` or empty.
        timed_out: &'static str,
        /// `", after 5 retries"` or empty.
        retried: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with a body that is not what cairn expects (AWS: not XML, or XML
    /// without the elements cairn reads).
    #[error("{service}: {request} returned a body cairn cannot read ({reason}): {excerpt}")]
    #[diagnostic(help(
        "check that the provider's `endpoint` points at the API (for EC2: \
         https://ec2.REGION.amazonaws.com)"
    ))]
    Unreadable { service: &'static str, request: String, reason: String, excerpt: String },
    /// The API answered, but not in the shape cairn expects.
    #[error(
        "{service}: {method} {path} returned {status} with a body cairn cannot read: {excerpt}"
    )]
    #[diagnostic(help(
        "check that the provider's `endpoint` points at the API (it ends in /v1 for Hetzner)"
    ))]
    Decode {
        service: &'static str,
        method: String,
        path: String,
        status: u16,
        excerpt: String,
        #[source]
        source: serde_json::Error,
    },
    /// The API answered with more than [`MAX_BODY`] bytes.
    #[error(
        "{service}: {method} {url} answered with more than {limit_mib} MiB; cairn stopped reading"
    )]
    #[diagnostic(help(
        "an API answer this large is not what the API sends: check that the provider's \
         `endpoint` points at the API itself"
    ))]
    TooLarge { service: &'static str, method: String, url: String, limit_mib: usize },
    /// The API answered with a redirect to another scheme, host or port, which cairn does not
    /// follow: the credentials must go only where the endpoint says.
    #[error("{service}: {method} {url} redirects to {location}, which cairn does not follow")]
    #[diagnostic(help(
        "cairn sends credentials only to the endpoint's own scheme, host and port; set the \
         provider's `endpoint` to the API's real address"
    ))]
    Redirected { service: &'static str, method: String, url: String, location: String },
    #[error("{service}: invalid endpoint `{url}`: {reason}")]
    #[diagnostic(help("write the API's base URL, such as https://api.hetzner.cloud/v1"))]
    Endpoint { service: &'static str, url: String, reason: String },
    #[error("{service}: the API token is not a valid HTTP header value")]
    #[diagnostic(help(
        "check {token_env}: it must be the token alone, without spaces or newlines"
    ))]
    BadToken { service: &'static str, token_env: &'static str },
    #[error("{service}: could not sign the request: {reason}")]
    #[diagnostic(help("check the provider's `endpoint`, `region` and access key id"))]
    Signing { service: &'static str, reason: String },
    #[error("{service}: could not set up the HTTP client")]
    Client {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl HttpError {
    /// The HTTP status the API answered with, if it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// The API's error code (`not_found`, `uniqueness_error`...), if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// What the user can do about it (the same text miette shows as help).
    pub fn help(&self) -> String {
        use miette::Diagnostic;
        Diagnostic::help(self).map(|h| h.to_string()).unwrap_or_default()
    }
}

/// How requests are authenticated.
enum Auth {
    /// `Authorization: Bearer <token>` (marked sensitive).
    Bearer(HeaderValue),
    /// AWS Signature Version 4, computed per attempt (the signature covers the time).
    SigV4 { identity: aws_smithy_runtime_api::client::identity::Identity, scope: SigningScope },
}

/// A request body.
#[derive(Clone, Copy)]
enum Body<'a> {
    Empty,
    Json(&'a serde_json::Value),
    /// `application/x-www-form-urlencoded`, already encoded.
    Form(&'a str),
}

/// An authenticated client for one API.
pub struct HttpClient {
    inner: reqwest::Client,
    /// The base URL without a trailing slash (`https://api.hetzner.cloud/v1`).
    base: String,
    auth: Auth,
    /// Kept to scrub them from any response text quoted in an error (token, secret key,
    /// session token).
    secrets: Vec<Sensitive>,
    service: Service,
    config: ClientConfig,
    retries: AtomicU32,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.service.name)
            .field("base", &self.base)
            .field(
                "auth",
                &match &self.auth {
                    Auth::Bearer(_) => "bearer <redacted>".to_owned(),
                    Auth::SigV4 { scope, .. } => {
                        format!("sigv4 {}/{} <redacted>", scope.region, scope.service)
                    }
                },
            )
            .field("config", &self.config)
            .finish()
    }
}

impl HttpClient {
    /// A client sending `token` as a bearer token.
    pub fn new(
        service: Service,
        base_url: &str,
        token: &Sensitive,
        config: ClientConfig,
    ) -> Result<Self, HttpError> {
        let base = check_base_url(service, base_url)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
            HttpError::BadToken { service: service.name, token_env: service.token_env }
        })?;
        auth.set_sensitive(true);
        Self::build(service, base, Auth::Bearer(auth), vec![token.clone()], config)
    }

    /// A client signing every request with AWS Signature Version 4.
    pub fn new_sigv4(
        service: Service,
        base_url: &str,
        credentials: &AwsCredentials,
        scope: SigningScope,
        config: ClientConfig,
    ) -> Result<Self, HttpError> {
        let base = check_base_url(service, base_url)?;
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.0.clone(),
            credentials.session_token.as_ref().map(|t| t.0.clone()),
            None,
            "cairn inventory",
        )
        .into();
        let mut secrets = vec![credentials.secret_access_key.clone()];
        secrets.extend(credentials.session_token.clone());
        Self::build(service, base, Auth::SigV4 { identity, scope }, secrets, config)
    }

    fn build(
        service: Service,
        base: String,
        auth: Auth,
        secrets: Vec<Sensitive>,
        config: ClientConfig,
    ) -> Result<Self, HttpError> {
        let inner = reqwest::Client::builder()
            .redirect(same_origin_redirects())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| HttpError::Client { service: service.name, source })?;
        Ok(Self { inner, base, auth, secrets, service, config, retries: AtomicU32::new(0) })
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// How many requests were repeated since the client was made (for diagnostics and tests).
    pub fn retries(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, HttpError> {
        self.request(Method::GET, path, query, None).await
    }

    /// A form-encoded POST (the AWS Query API: `Action=RunInstances&Version=...`), retried as
    /// [`RetryPolicy`] says; the text of a 2xx answer. Errors name the form's `Action`.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(String, String)],
    ) -> Result<String, HttpError> {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let label = form
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("POST {path}"));
        let (_, bytes) =
            self.exchange(Method::POST, path, &label, &[], Body::Form(&encoded)).await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| HttpError::Unreadable {
            service: self.service.name,
            request: label,
            reason: "not UTF-8".into(),
            excerpt: self.excerpt(&bytes),
        })
    }

    /// An [`HttpError::Unreadable`] for an answer to `request` that lacks what cairn needs.
    pub fn unreadable(&self, request: &str, reason: &str, body: &str) -> HttpError {
        HttpError::Unreadable {
            service: self.service.name,
            request: request.to_owned(),
            reason: reason.to_owned(),
            excerpt: self.excerpt(body.as_bytes()),
        }
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, HttpError> {
        self.request(Method::POST, path, &[], Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        self.request(Method::DELETE, path, &[], None).await
    }

    /// One API call, retried as [`RetryPolicy`] says. `path` starts with `/` and is relative
    /// to the base URL; an empty 2xx body reads as JSON `null`.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, HttpError> {
        let label = format!("{method} {path}");
        let body = body.map_or(Body::Empty, Body::Json);
        let (status, bytes) = self.exchange(method.clone(), path, &label, query, body).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"null" } else { &bytes };
        serde_json::from_slice(text).map_err(|source| HttpError::Decode {
            service: self.service.name,
            method: method.to_string(),
            path: path.to_owned(),
            status: status.as_u16(),
            excerpt: self.excerpt(&bytes),
            source,
        })
    }

    /// Sends one request until it succeeds, fails for good or retries run out; the status and
    /// body of a 2xx answer. `label` names the request in errors.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        label: &str,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.base, path)).map_err(|e| {
            HttpError::Endpoint {
                service: self.service.name,
                url: format!("{}{}", self.base, path),
                reason: e.to_string(),
            }
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k, v)));
        }
        let mut attempt = 0;
        loop {
            let mut req = self.inner.request(method.clone(), url.clone());
            let mut content_type = None;
            let payload: &[u8] = match body {
                Body::Empty => b"",
                Body::Json(v) => {
                    req = req.json(v);
                    b""
                }
                Body::Form(f) => {
                    content_type = Some("application/x-www-form-urlencoded; charset=utf-8");
                    f.as_bytes()
                }
            };
            if let Some(ct) = content_type {
                req = req.header(CONTENT_TYPE, ct).body(payload.to_vec());
            }
            match &self.auth {
                Auth::Bearer(value) => req = req.header(AUTHORIZATION, value.clone()),
                Auth::SigV4 { identity, scope } => {
                    for (name, value) in
                        self.sign(identity, scope, &method, &url, content_type, payload)?
                    {
                        let mut value =
                            HeaderValue::from_str(&value).map_err(|_| HttpError::Signing {
                                service: self.service.name,
                                reason: format!("the {name} header is not a valid header value"),
                            })?;
                        value.set_sensitive(true);
                        req = req.header(name, value);
                    }
                }
            }
            let started = Instant::now();
            let sent = req.send().await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    let timed_out = e.is_timeout();
                    tracing::debug!(
                        method = %method, path, error = %e, timed_out,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "{} request failed", self.service.name
                    );
                    if timed_out && self.back_off_after_timeout(&method, path, attempt).await {
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_error(&method, url.as_str(), attempt, e));
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            if status.is_redirection() {
                let location = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("(no Location header)");
                return Err(HttpError::Redirected {
                    service: self.service.name,
                    method: method.to_string(),
                    url: url.to_string(),
                    location: location.to_owned(),
                });
            }
            let bytes = match read_capped(response, MAX_BODY).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return Err(HttpError::TooLarge {
                        service: self.service.name,
                        method: method.to_string(),
                        url: url.to_string(),
                        limit_mib: MAX_BODY >> 20,
                    })
                }
                Err(e) => {
                    if e.is_timeout() && self.back_off_after_timeout(&method, path, attempt).await {
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_error(&method, url.as_str(), attempt, e));
                }
            };
            tracing::debug!(
                method = %method, path, status = status.as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "{} request", self.service.name
            );
            if status.is_success() {
                return Ok((status, bytes.to_vec()));
            }
            let envelope = match self.service.dialect {
                Dialect::Hetzner => parse_envelope(&bytes),
                Dialect::AwsQuery => parse_aws_error(&bytes),
            };
            let code = envelope.as_ref().map(|e| e.code.as_str());
            let retryable = match self.service.dialect {
                Dialect::Hetzner => is_retryable(status, code),
                Dialect::AwsQuery => is_retryable_aws(status, code),
            };
            if retryable && attempt < self.config.retry.max_retries {
                let server_wait = server_wait(status, &headers, SystemTime::now());
                let delay = retry_delay(&self.config.retry, attempt, server_wait);
                self.note_retry(&method, path, status.as_str(), delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            let mut err = self.api_error(&method, path, label, status, &headers, envelope, &bytes);
            if let HttpError::Api(e) = &mut err {
                e.retried = retried_note(attempt);
            }
            return Err(err);
        }
    }

    /// After a timed-out attempt: waits the backoff delay and says so, or returns false when
    /// the retries are used up.
    async fn back_off_after_timeout(&self, method: &Method, path: &str, attempt: u32) -> bool {
        if attempt >= self.config.retry.max_retries {
            return false;
        }
        let delay = retry_delay(&self.config.retry, attempt, None);
        self.note_retry(method, path, "timeout", delay);
        tokio::time::sleep(delay).await;
        true
    }

    /// The request or its response body could not be carried (connection, TLS, timeout).
    fn transport_error(
        &self,
        method: &Method,
        url: &str,
        attempt: u32,
        e: reqwest::Error,
    ) -> HttpError {
        HttpError::Transport {
            service: self.service.name,
            method: method.to_string(),
            url: url.to_owned(),
            timed_out: if e.is_timeout() { " (timed out)" } else { "" },
            retried: retried_note(attempt),
            source: e.without_url(),
        }
    }

    fn note_retry(&self, method: &Method, path: &str, why: &str, delay: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            method = %method, path, why, delay_ms = delay.as_millis() as u64,
            "{} request will be retried", self.service.name
        );
    }
}

impl HttpClient {
    /// Up to 200 characters of a response, never containing a credential.
    fn excerpt(&self, bytes: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for secret in &self.secrets {
            if !secret.0.is_empty() {
                text = text.replace(&secret.0, "<redacted>");
            }
        }
        let text = text.trim();
        if text.is_empty() {
            return "(empty)".into();
        }
        let mut out: String = text.chars().take(200).collect();
        if out.len() < text.len() {
            out.push('…');
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn api_error(
        &self,
        method: &Method,
        path: &str,
        request: &str,
        status: StatusCode,
        headers: &HeaderMap,
        envelope: Option<Envelope>,
        bytes: &[u8],
    ) -> HttpError {
        let correlation_id = headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| envelope.as_ref().and_then(|e| e.correlation_id.clone()));
        let (code, message, fields) = match envelope {
            Some(e) => (e.code, self.excerpt(e.message.as_bytes()), e.fields),
            None => (
                status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"),
                self.excerpt(bytes),
                Vec::new(),
            ),
        };
        let (message, help) = match self.service.dialect {
            Dialect::Hetzner => describe(self.service, status.as_u16(), &code, message, &fields),
            Dialect::AwsQuery => describe_aws(self.service, status.as_u16(), &code, message),
        };
        HttpError::Api(Box::new(ApiError {
            service: self.service.name,
            request: request.to_owned(),
            method: method.to_string(),
            path: path.to_owned(),
            status: status.as_u16(),
            code,
            message,
            fields,
            correlation_id,
            retried: String::new(),
            help,
        }))
    }
}

/// The base URL without a trailing slash, if it is an https URL without a query (or plain
/// http to this machine: an emulator on loopback).
fn check_base_url(service: Service, base_url: &str) -> Result<String, HttpError> {
    let base = base_url.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base).map_err(|e| HttpError::Endpoint {
        service: service.name,
        url: base_url.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(HttpError::Endpoint {
            service: service.name,
            url: base_url.to_owned(),
            reason: "use an http:// or https:// URL without a query".into(),
        });
    }
    if url.scheme() == "http" && !crate::download::is_loopback(&url) {
        return Err(HttpError::Endpoint {
            service: service.name,
            url: base_url.to_owned(),
            reason: "plain http:// would carry the credentials in cleartext; use https:// \
                     (plain http only to this machine: 127.0.0.1, ::1, localhost)"
                .into(),
        });
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = Sensitive("s3cr3t-t0ken-value".into());
        let client = HttpClient::new(
            HETZNER_CLOUD,
            "http://127.0.0.1:9/v1/",
            &token,
            ClientConfig::default(),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("http://127.0.0.1:9/v1"), "{debug}");
        assert_eq!(client.excerpt(b"echo: Bearer s3cr3t-t0ken-value"), "echo: Bearer <redacted>");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let token = Sensitive("t".into());
        for bad in ["api.hetzner.cloud/v1", "ftp://x/v1", "https://x/v1?a=b"] {
            let err =
                HttpClient::new(HETZNER_CLOUD, bad, &token, ClientConfig::default()).unwrap_err();
            assert!(matches!(err, HttpError::Endpoint { .. }), "{bad}: {err:?}");
        }
        let err = HttpClient::new(
            HETZNER_CLOUD,
            "https://x/v1",
            &Sensitive("a\nb".into()),
            ClientConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HttpError::BadToken { .. }));
        assert!(!format!("{err:?}{err}").contains("a\nb"));
    }
}
