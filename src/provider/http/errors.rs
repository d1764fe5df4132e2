//! The vendors' error dialects: Hetzner's JSON envelope and the AWS Query API's XML, turned
//! into a message and a help a user can act on, and which answers are worth repeating.

use reqwest::StatusCode;

use super::*;

/// Hetzner's error envelope: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Envelope {
    pub(super) code: String,
    pub(super) message: String,
    /// `details.fields[].name` (+ messages) for `invalid_input`.
    pub(super) fields: Vec<String>,
    pub(super) correlation_id: Option<String>,
}

pub(super) fn parse_envelope(bytes: &[u8]) -> Option<Envelope> {
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
pub(super) fn parse_aws_error(bytes: &[u8]) -> Option<Envelope> {
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
pub(super) fn describe_aws(
    service: Service,
    status: u16,
    code: &str,
    message: String,
) -> (String, String) {
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
pub(super) fn is_retryable_aws(status: StatusCode, code: Option<&str>) -> bool {
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
pub(super) fn describe(
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
pub(super) fn is_retryable(status: StatusCode, code: Option<&str>) -> bool {
    match status.as_u16() {
        429 | 423 => true,
        409 => matches!(code, Some("conflict") | None),
        500 | 502 | 503 | 504 => true,
        _ => matches!(code, Some("locked" | "conflict" | "rate_limit_exceeded")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
