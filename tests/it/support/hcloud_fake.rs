//! A hand-written stand-in for the Hetzner Cloud API. It exists only for what cloudalone, the
//! real emulator these tests use first, cannot do: keep labels and answer `label_selector`,
//! send rate-limit headers, answer 429 and 5xx, enable rescue mode, fail an action, and echo
//! the request back. It knows just the routes the tests call, speaks one request per
//! connection of hand-written HTTP/1.1 on 127.0.0.1, and records every request it gets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use md5::{Digest as _, Md5};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The fake's world.
#[derive(Default)]
pub struct Cloud {
    pub servers: Vec<Value>,
    pub ssh_keys: Vec<Value>,
    /// Every action ends in `error`.
    pub fail_actions: bool,
    pub next_id: u64,
    /// Each action's command, by id.
    pub actions: Vec<(u64, String)>,
}

/// One canned answer, served before any route is consulted.
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = json!({ "error": { "code": code, "message": message, "details": null } });
        Self { status, headers: Vec::new(), body: body.to_string() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string() }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: String,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    cloud: Cloud,
    script: VecDeque<Reply>,
    requests: Vec<Request>,
}

pub struct Fake {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start(cloud: Cloud) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Mutex::new(Inner { cloud, ..Default::default() }));
        let shared = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move { serve(stream, shared).await });
            }
        });
        Self { port, inner, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Answers to give, in order, before the routes answer again.
    pub fn script(&self, replies: Vec<Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn cloud<T>(&self, f: impl FnOnce(&mut Cloud) -> T) -> T {
        f(&mut self.inner.lock().unwrap().cloud)
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Inner>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let mut content_length = 0;
    let mut authorization = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + content_length]).into_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), parse_query(q)),
        None => (target.clone(), Vec::new()),
    };
    let req = Request { method, path, query, authorization, body };
    let reply = {
        let mut inner = shared.lock().unwrap();
        inner.requests.push(req.clone());
        match inner.script.pop_front() {
            Some(r) => r,
            None => route(&mut inner.cloud, &req),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn action(cloud: &mut Cloud, command: &str) -> Value {
    cloud.next_id += 1;
    cloud.actions.push((cloud.next_id, command.to_owned()));
    json!({ "id": cloud.next_id, "command": command, "status": "running", "progress": 0, "error": null })
}

fn is_id(v: &Value, id: &str) -> bool {
    id.parse::<u64>().is_ok_and(|id| v["id"] == id)
}

fn not_found() -> Reply {
    Reply::error(404, "not_found", "resource not found")
}

fn route(cloud: &mut Cloud, req: &Request) -> Reply {
    let segments: Vec<&str> = req.path.trim_start_matches("/v1/").split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["servers"]) => {
            let mut servers: Vec<Value> = cloud.servers.clone();
            if let Some(name) = req.param("name") {
                servers.retain(|s| s["name"] == name);
            }
            if let Some(selector) = req.param("label_selector") {
                for term in selector.split(',') {
                    let (k, v) = term.split_once('=').unwrap();
                    servers.retain(|s| s["labels"][k] == v);
                }
            }
            // Pages as the real API gives them: `per_page` (default 25, at most 50) from
            // `page` (1-based), with `next_page` null on the last.
            let per_page: usize =
                req.param("per_page").and_then(|p| p.parse().ok()).unwrap_or(25).clamp(1, 50);
            let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
            let total = servers.len();
            let last_page = total.div_ceil(per_page).max(1);
            let shown: Vec<Value> =
                servers.into_iter().skip((page - 1) * per_page).take(per_page).collect();
            let next = (page < last_page).then_some(page + 1);
            Reply::json(
                200,
                json!({ "servers": shown, "meta": { "pagination": {
                    "page": page, "per_page": per_page, "next_page": next,
                    "last_page": last_page, "total_entries": total,
                } } }),
            )
        }
        ("POST", ["servers"]) => {
            let body = req.json();
            let id = cloud.servers.len() as u64 + 1;
            let server = json!({
                "id": id,
                "name": body["name"],
                "status": "running",
                "public_net": { "ipv4": { "ip": "203.0.113.10" }, "ipv6": { "ip": "2001:db8:1::/64" } },
                "server_type": { "name": body["server_type"] },
                "image": { "name": body["image"] },
                "datacenter": { "name": "fsn1-dc14", "location": { "name": body["location"] } },
                "labels": body["labels"],
                "rescue_enabled": false,
            });
            cloud.servers.push(server.clone());
            let action = action(cloud, "create_server");
            Reply::json(201, json!({ "server": server, "action": action, "next_actions": [] }))
        }
        ("GET", ["servers", id]) => match cloud.servers.iter().find(|s| is_id(s, id)) {
            Some(s) => Reply::json(200, json!({ "server": s })),
            None => not_found(),
        },
        ("DELETE", ["servers", id]) => {
            let before = cloud.servers.len();
            cloud.servers.retain(|s| !is_id(s, id));
            if cloud.servers.len() == before {
                return not_found();
            }
            Reply::json(200, json!({ "action": action(cloud, "delete_server") }))
        }
        ("POST", ["servers", id, "actions", verb]) => {
            let Some(server) = cloud.servers.iter_mut().find(|s| is_id(s, id)) else {
                return not_found();
            };
            let mut extra = json!({});
            match *verb {
                "enable_rescue" => {
                    server["rescue_enabled"] = json!(true);
                    extra = json!({ "root_password": "rescue-pw" });
                }
                "poweron" | "reset" => server["status"] = json!("running"),
                "poweroff" => server["status"] = json!("off"),
                _ => {}
            }
            let mut reply = json!({ "action": action(cloud, verb) });
            if let Some(pw) = extra.get("root_password") {
                reply["root_password"] = pw.clone();
            }
            Reply::json(201, reply)
        }
        ("GET", ["actions", id]) => {
            let id = id.parse::<u64>().unwrap_or(0);
            let command = cloud.actions.iter().find(|(i, _)| *i == id).map(|(_, c)| c.clone());
            let mut a = json!({ "id": id, "command": command.as_deref().unwrap_or("unknown"), "status": "success", "progress": 100, "error": null });
            if cloud.fail_actions {
                a["status"] = json!("error");
                a["error"] = json!({ "code": "resource_unavailable", "message": "no capacity left in fsn1" });
            }
            Reply::json(200, json!({ "action": a }))
        }
        ("GET", ["ssh_keys"]) => {
            let mut keys = cloud.ssh_keys.clone();
            if let Some(fp) = req.param("fingerprint") {
                keys.retain(|k| k["fingerprint"] == fp);
            }
            Reply::json(
                200,
                json!({ "ssh_keys": keys, "meta": { "pagination": { "page": 1, "next_page": null } } }),
            )
        }
        ("POST", ["ssh_keys"]) => {
            let body = req.json();
            let line = body["public_key"].as_str().unwrap_or("");
            let blob = line.split_whitespace().nth(1).unwrap_or("");
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(blob).unwrap_or_default();
            let fp = Md5::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let key = json!({
                "id": cloud.ssh_keys.len() + 1,
                "name": body["name"],
                "fingerprint": fp,
                "public_key": line,
                "labels": body["labels"],
            });
            cloud.ssh_keys.push(key.clone());
            Reply::json(201, json!({ "ssh_key": key }))
        }
        _ => not_found(),
    }
}
