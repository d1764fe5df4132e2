//! What the client guards at the transport: how much of an answer it reads, and where it
//! lets a redirect take the credentials.

/// The most cairn reads of one API answer. The largest real answers (a page of 50 servers,
/// 1,000 instances) are a few MiB.
pub const MAX_BODY: usize = 64 << 20;

/// The body of `response`, or `None` once it passes `cap` bytes (announced or sent).
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Redirects are followed only within the endpoint's own scheme, host and port (at most
/// five), so a token or signature never travels to another server; any other redirect is
/// handed back and reported as [`HttpError::Redirected`].
pub(super) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same_origin && attempt.previous().len() <= 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering every connection with `answer(request)`, counting the
    /// requests it saw and keeping their text.
    async fn serve(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply = answer(&request);
                log.lock().unwrap().push(request);
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (port, seen)
    }

    fn client(port: u16) -> HttpClient {
        let retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        let config = ClientConfig { retry, ..ClientConfig::default() };
        let base = format!("http://127.0.0.1:{port}/v1");
        HttpClient::new(HETZNER_CLOUD, &base, &Sensitive("s3cret-token".into()), config).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_to_another_server_is_refused_and_the_token_never_goes_there() {
        let (other, other_seen) =
            serve(|_| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".into()).await;
        let (api, _) = serve(move |_| {
            format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{other}/v1/servers\r\ncontent-length: 0\r\n\r\n")
        })
        .await;
        let err = client(api).get::<serde_json::Value>("/servers", &[]).await.unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, HttpError::Redirected { .. }), "{err:?}");
        assert!(
            shown.contains(&format!("redirects to http://127.0.0.1:{other}/v1/servers")),
            "{shown}"
        );
        assert!(other_seen.lock().unwrap().is_empty(), "the other server was asked");
    }

    #[tokio::test]
    async fn a_redirect_within_the_endpoint_is_followed() {
        let (api, seen) = serve(|req| {
            if req.starts_with("GET /v1/servers ") {
                "HTTP/1.1 301 Moved\r\nlocation: /v1/servers2\r\ncontent-length: 0\r\n\r\n".into()
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"ok\": true}".into()
            }
        })
        .await;
        let v: serde_json::Value = client(api).get("/servers", &[]).await.unwrap();
        assert_eq!(v["ok"], true);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].to_ascii_lowercase().contains("authorization: bearer s3cret-token"));
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_before_it_is_read() {
        let announced = MAX_BODY + 1;
        let (api, _) =
            serve(move |_| format!("HTTP/1.1 200 OK\r\ncontent-length: {announced}\r\n\r\n{{"))
                .await;
        let err = client(api).get::<serde_json::Value>("/servers", &[]).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("more than 64 MiB"), "{err}");
    }

    #[tokio::test]
    async fn a_chunked_answer_is_cut_at_the_cap() {
        let body = "x".repeat(5000);
        let (port, _) = serve(move |_| {
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        })
        .await;
        let url = format!("http://127.0.0.1:{port}/");
        let fetch = || async { reqwest::get(&url).await.unwrap() };
        assert_eq!(read_capped(fetch().await, 4096).await.unwrap(), None);
        assert_eq!(read_capped(fetch().await, 5000).await.unwrap().map(|b| b.len()), Some(5000));
    }

    #[test]
    fn plain_http_to_another_machine_is_refused() {
        let token = Sensitive("t".into());
        let err = HttpClient::new(
            HETZNER_CLOUD,
            "http://api.example.org/v1",
            &token,
            ClientConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cleartext"), "{err}");
        for ok in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]:8080/v1",
            "http://localhost/v1",
            "https://api.example.org/v1",
        ] {
            HttpClient::new(HETZNER_CLOUD, ok, &token, ClientConfig::default()).unwrap();
        }
    }
}
