//! AWS Signature Version 4: the credentials, the scope, and the headers one attempt carries.

use std::fmt;
use std::time::SystemTime;

use reqwest::Method;

use super::*;
use crate::inventory::Sensitive;

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

impl HttpClient {
    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for one
    /// attempt. The signature covers the host, the content type and the body.
    pub(super) fn sign(
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
}
