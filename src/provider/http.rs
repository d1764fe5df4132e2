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

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::inventory::Sensitive;

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
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Sensitive,
    /// For temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<Sensitive>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where and as what a SigV4 client signs: `region` (`eu-central-1`) and the service's
/// signing name (`ec2`, `iam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningScope {
    pub region: String,
    pub service: &'static str,
}

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
            let bytes = match response.bytes().await {
                Ok(b) => b,
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

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for one
    /// attempt. The signature covers the host, the content type and the body.
    fn sign(
        &self,
        identity: &aws_smithy_runtime_api::client::identity::Identity,
        scope: &SigningScope,
        method: &Method,
        url: &reqwest::Url,
        content_type: Option<&str>,
        payload: &[u8],
    ) -> Result<Vec<(&'static str, String)>, HttpError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let failed = |reason: String| HttpError::Signing { service: self.service.name, reason };
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(failed("the endpoint has no host".into())),
        };
        let mut headers = vec![("host", host.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(identity)
            .region(&scope.region)
            .name(scope.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method.as_str(),
            url.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(payload),
        )
        .map_err(|e| failed(e.to_string()))?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| failed(e.to_string()))?.into_parts();
        let (headers, _params) = instructions.into_parts();
        Ok(headers.into_iter().map(|h| (h.name(), h.value().to_owned())).collect())
    }

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

/// The base URL without a trailing slash, if it is an http(s) URL without a query.
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
    Ok(base)
}

fn retried_note(attempt: u32) -> String {
    match attempt {
        0 => String::new(),
        1 => ", after 1 retry".into(),
        n => format!(", after {n} retries"),
    }
}

/// Hetzner's error envelope: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Envelope {
    code: String,
    message: String,
    /// `details.fields[].name` (+ messages) for `invalid_input`.
    fields: Vec<String>,
    correlation_id: Option<String>,
}

fn parse_envelope(bytes: &[u8]) -> Option<Envelope> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let err = v.get("error")?;
    let code = err.get("code")?.as_str()?.to_owned();
    let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("").to_owned();
    let fields = err
        .get("details")
        .and_then(|d| d.get("fields"))
        .and_then(|f| f.as_array())
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?;
                    let msgs: Vec<&str> = f
                        .get("messages")
                        .and_then(|m| m.as_array())
                        .map(|m| m.iter().filter_map(|s| s.as_str()).collect())
                        .unwrap_or_default();
                    Some(if msgs.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{name}: {}", msgs.join("; "))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let correlation_id = v.get("correlation_id").and_then(|c| c.as_str()).map(str::to_owned);
    Some(Envelope { code, message, fields, correlation_id })
}

/// An AWS Query API error: the first `<Error>`'s `<Code>` and `<Message>`, and the request id
/// (`<RequestID>` in EC2's envelope, `<RequestId>` in IAM's).
fn parse_aws_error(bytes: &[u8]) -> Option<Envelope> {
    let text = std::str::from_utf8(bytes).ok()?;
    let doc = roxmltree::Document::parse(text).ok()?;
    let error = doc.descendants().find(|n| n.has_tag_name("Error"))?;
    let child = |name: &str| {
        error.children().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::trim)
    };
    let code = child("Code")?.to_owned();
    let message = child("Message").unwrap_or("").to_owned();
    let correlation_id = doc
        .descendants()
        .find(|n| n.has_tag_name("RequestID") || n.has_tag_name("RequestId"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned());
    Some(Envelope { code, message, fields: Vec::new(), correlation_id })
}

/// AWS codes meaning "the credentials themselves were refused".
pub const AWS_AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidAccessKeyId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "RequestExpired",
];

/// The message and help for an AWS error code. Unknown codes get a help by HTTP status.
fn describe_aws(service: Service, status: u16, code: &str, message: String) -> (String, String) {
    let base = code.split('.').next().unwrap_or(code);
    match code {
        "RequestExpired" => (
            message,
            "the request's signature is too old or from the future: check this machine's clock \
             (AWS allows 5 minutes of skew)"
                .into(),
        ),
        "ExpiredToken" => (
            format!("the session token has expired: {message}"),
            "get fresh temporary credentials and export them again (AWS_SESSION_TOKEN)".into(),
        ),
        _ if AWS_AUTH_CODES.contains(&code) => (
            message,
            format!(
                "check the access key id and its secret (AWS_ACCESS_KEY_ID and {}, or the \
                 provider block's `access_key_id` and `secret_access_key`): {}",
                service.token_env, service.token_howto
            ),
        ),
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => (
            message,
            "the access key works but lacks a permission: allow the EC2 actions cairn uses \
             (ec2:RunInstances, ec2:DescribeInstances, ec2:TerminateInstances, \
             ec2:Start/Stop/RebootInstances, ec2:CreateTags, ec2:ImportKeyPair, \
             ec2:DescribeKeyPairs, ec2:CreateSecurityGroup, ec2:DescribeSecurityGroups, \
             ec2:AuthorizeSecurityGroupIngress, ec2:DescribeVpcs, ec2:DescribeSubnets) in the \
             user's IAM policy"
                .into(),
        ),
        "OptInRequired" | "PendingVerification" | "Blocked" => (
            message,
            "the AWS account cannot use EC2 in this region yet: finish the account's sign-up or \
             opt in to the region in the AWS console"
                .into(),
        ),
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" => (
            message,
            "the image (AMI id) does not exist in this region: set the host's `image` (or the \
             block's `ami`) to an AMI id of the provider's region, such as ami-0abcdef1234567890"
                .into(),
        ),
        "InvalidParameterValue" | "InvalidParameterCombination" | "Unsupported"
            if message.contains("nstance type") || message.contains("InstanceType") =>
        {
            (
                message,
                "the instance type is not offered here: set the host's `size` to an EC2 instance \
             type such as t3.small, available in this region and availability zone"
                    .into(),
            )
        }
        "InvalidSubnetID.NotFound" | "InvalidSubnet" => (
            message,
            "the provider block's `subnet_id` names no subnet of this region and account".into(),
        ),
        "InvalidKeyPair.NotFound" | "InvalidKeyPair.Format" => (
            message,
            "the operator's SSH key could not be used as an EC2 key pair: use an ed25519 or RSA \
             key"
            .into(),
        ),
        "InstanceLimitExceeded" | "VcpuLimitExceeded" | "ResourceLimitExceeded" => (
            message,
            "the account's limit is reached: terminate instances you no longer need, or ask AWS \
             for a higher quota (Service Quotas console)"
                .into(),
        ),
        "InsufficientInstanceCapacity" | "InsufficientCapacity" => (
            message,
            "AWS has no capacity for this instance type in this zone right now: choose another \
             `location` (availability zone) or `size`, or retry later"
                .into(),
        ),
        "IncorrectInstanceState" | "IncorrectState" => (
            message,
            "the instance is in the middle of another change: wait for it and run the command \
             again"
                .into(),
        ),
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => (
            message,
            "too many requests for this account: wait a minute and run the command again".into(),
        ),
        "InvalidAction" | "InvalidQueryParameter" | "MalformedQueryString" | "MissingParameter" => {
            (message, "cairn sent a request EC2 cannot read: please report this bug".into())
        }
        _ if base.ends_with("NotFound") || code.ends_with(".NotFound") => (
            message,
            "the resource does not exist (any more) in this region: run `cairn plan` to see what \
             cairn knows"
                .into(),
        ),
        _ => {
            let help = match status {
                401 | 403 => format!(
                    "check the access key (AWS_ACCESS_KEY_ID and {}) and its permissions",
                    service.token_env
                ),
                404 => "check the provider's `endpoint` and `region`".into(),
                500..=599 => format!("{} reports a problem on its side: retry later", service.name),
                _ => "see the message above".into(),
            };
            (message, help)
        }
    }
}

/// AWS answers worth repeating: throttling and server errors.
fn is_retryable_aws(status: StatusCode, code: Option<&str>) -> bool {
    match code {
        Some(
            "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "RequestThrottled"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable",
        ) => true,
        _ => matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504),
    }
}

/// The message and help for an API error code. Codes are Hetzner's; unknown codes get a
/// help by HTTP status.
fn describe(
    service: Service,
    status: u16,
    code: &str,
    message: String,
    fields: &[String],
) -> (String, String) {
    let token_env = service.token_env;
    let with_fields = |m: String| {
        if fields.is_empty() {
            m
        } else {
            format!("{m} (field {})", fields.join(", field "))
        }
    };
    match code {
        "unauthorized" => (
            format!("the {} token was refused", token_env.trim_end_matches("_TOKEN")),
            format!("{}, and export {token_env}", service.token_howto),
        ),
        "forbidden" => (
            with_fields(message),
            format!(
                "the token may only read, or lacks access to this resource: {} with read/write \
                 permission and export {token_env}",
                service.token_howto
            ),
        ),
        "uniqueness_error" => (
            with_fields(message),
            "the name (or key) is already taken in this project: delete or rename the existing \
             resource, or choose another name"
                .into(),
        ),
        "resource_limit_exceeded" => (
            with_fields(message),
            "the project's limit (servers, cores, IPs...) is reached: delete resources you no \
             longer need, or ask the provider to raise the limit"
                .into(),
        ),
        "invalid_input" => (
            with_fields(message),
            "fix the named value in cairn.hcl (size/server_type, image and location must be \
             names the provider offers)"
                .into(),
        ),
        "not_found" => (
            message,
            "the resource does not exist (any more): run `cairn plan` to see what cairn knows"
                .into(),
        ),
        "resource_unavailable" => (
            with_fields(message),
            "the provider cannot offer this right now (e.g. the server type is sold out in the \
             location): choose another location or size, or retry later"
                .into(),
        ),
        "locked" | "conflict" => (
            message,
            "another action is still running on this resource: wait for it and run the command \
             again"
                .into(),
        ),
        "rate_limit_exceeded" => (
            message,
            "too many requests for this token: wait a minute and run the command again".into(),
        ),
        "protected" => (
            message,
            "the resource is protected: lift its protection in the provider's console first".into(),
        ),
        "json_error" => {
            (message, "cairn sent a request the API cannot read: please report this bug".into())
        }
        "maintenance" | "service_error" | "server_error" | "unavailable" => {
            (message, format!("{} reports a problem on its side: retry later", service.name))
        }
        _ => {
            let help = match status {
                401 => format!("{}, and export {token_env}", service.token_howto),
                404 => "check the provider's `endpoint`, and that the resource still exists".into(),
                500..=599 => format!("{} reports a problem on its side: retry later", service.name),
                _ => "see the message above".into(),
            };
            (with_fields(message), help)
        }
    }
}

/// Whether an answer is worth repeating: rate limits, server errors, and the two conflicts
/// that clear by themselves (`conflict`, `locked`). Not `uniqueness_error`, Hetzner's other 409.
fn is_retryable(status: StatusCode, code: Option<&str>) -> bool {
    match status.as_u16() {
        429 | 423 => true,
        409 => matches!(code, Some("conflict") | None),
        500 | 502 | 503 | 504 => true,
        _ => matches!(code, Some("locked" | "conflict" | "rate_limit_exceeded")),
    }
}

/// How long the server asks us to wait: `Retry-After` (seconds), or on 429 `RateLimit-Reset`
/// (Hetzner: a unix time; the IETF draft: seconds from now).
fn server_wait(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(reset) = number("ratelimit-reset") {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            // Anything past 2001-09-09 is a point in time, anything smaller a delta.
            return Some(Duration::from_secs(if reset >= 1_000_000_000 {
                reset.saturating_sub(now)
            } else {
                reset
            }));
        }
    }
    None
}

/// The wait before retry number `attempt + 1`: `base * 2^attempt` with equal jitter (between
/// half and all of it), at least what the server asked for, never more than `max_delay`.
fn retry_delay(policy: &RetryPolicy, attempt: u32, server_wait: Option<Duration>) -> Duration {
    let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(20)).min(policy.max_delay);
    let half = exp / 2;
    let jitter = if half.is_zero() {
        Duration::ZERO
    } else {
        rand::thread_rng().gen_range(Duration::ZERO..=half)
    };
    (half + jitter).max(server_wait.unwrap_or_default()).min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        for attempt in 0..5 {
            let full = Duration::from_secs(1 << attempt);
            for _ in 0..50 {
                let d = retry_delay(&p, attempt, None);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(retry_delay(&p, 12, None) <= Duration::from_secs(60));
        assert!(retry_delay(&p, 40, None) <= Duration::from_secs(60));
    }

    #[test]
    fn server_wait_wins_over_a_shorter_backoff_but_not_over_the_cap() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(retry_delay(&p, 0, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(retry_delay(&p, 0, Some(Duration::from_secs(600))), Duration::from_secs(60));
    }

    #[test]
    fn rate_limit_reset_is_a_unix_time_or_a_delta() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = headers(&[("ratelimit-reset", "1800000009"), ("ratelimit-remaining", "0")]);
        assert_eq!(
            server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(9))
        );
        let h = headers(&[("ratelimit-reset", "4")]);
        assert_eq!(
            server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(4))
        );
        // A reset in the past means "now".
        let h = headers(&[("ratelimit-reset", "1799999990")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now), Some(Duration::ZERO));
        // Only a 429 makes RateLimit-Reset a wait.
        assert_eq!(server_wait(StatusCode::SERVICE_UNAVAILABLE, &h, now), None);
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(
            server_wait(StatusCode::SERVICE_UNAVAILABLE, &h, now),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn which_answers_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded")));
        assert!(is_retryable(StatusCode::LOCKED, Some("locked")));
        assert!(is_retryable(StatusCode::CONFLICT, Some("conflict")));
        assert!(!is_retryable(StatusCode::CONFLICT, Some("uniqueness_error")));
        assert!(is_retryable(StatusCode::BAD_GATEWAY, None));
        assert!(is_retryable(StatusCode::INTERNAL_SERVER_ERROR, Some("service_error")));
        assert!(!is_retryable(StatusCode::NOT_FOUND, Some("not_found")));
        assert!(!is_retryable(StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")));
        assert!(!is_retryable(StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }

    #[test]
    fn envelope_names_the_invalid_fields() {
        let body =
            br#"{"error":{"code":"invalid_input","message":"invalid input in field 'server_type'",
            "details":{"fields":[{"name":"server_type","messages":["unknown server type"]}]}}}"#;
        let e = parse_envelope(body).unwrap();
        assert_eq!(e.code, "invalid_input");
        assert_eq!(e.fields, vec!["server_type: unknown server type".to_owned()]);
        let (msg, help) = describe(HETZNER_CLOUD, 422, &e.code, e.message, &e.fields);
        assert_eq!(
            msg,
            "invalid input in field 'server_type' (field server_type: unknown server type)"
        );
        assert!(help.contains("cairn.hcl"), "{help}");
    }

    #[test]
    fn aws_errors_are_read_from_both_envelopes() {
        let ec2 = br#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"#;
        let e = parse_aws_error(ec2).unwrap();
        assert_eq!(e.code, "InvalidAMIID.NotFound");
        assert_eq!(e.correlation_id.as_deref(), Some("ea966190-f9aa-478e-9ede-example"));
        let (_, help) = describe_aws(AWS_EC2, 400, &e.code, e.message);
        assert!(help.contains("AMI id of the provider's region"), "{help}");
        let iam = br#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#;
        let e = parse_aws_error(iam).unwrap();
        let (_, help) = describe_aws(AWS_EC2, 403, &e.code, e.message);
        assert!(help.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{help}");
        assert!(parse_aws_error(b"<html>gateway</html>").is_none());
        assert!(is_retryable_aws(StatusCode::SERVICE_UNAVAILABLE, Some("RequestLimitExceeded")));
        assert!(is_retryable_aws(StatusCode::BAD_REQUEST, Some("Throttling")));
        assert!(!is_retryable_aws(StatusCode::UNAUTHORIZED, Some("AuthFailure")));
        assert!(!is_retryable_aws(StatusCode::BAD_REQUEST, Some("InvalidAMIID.NotFound")));
    }

    #[test]
    fn unauthorized_says_what_to_do() {
        let (msg, help) = describe(HETZNER_CLOUD, 401, "unauthorized", "invalid token".into(), &[]);
        assert_eq!(msg, "the HCLOUD token was refused");
        assert!(help.contains("read/write API token in the Cloud Console"), "{help}");
        assert!(help.ends_with("export HCLOUD_TOKEN"), "{help}");
    }

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
