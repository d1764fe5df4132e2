//! The post-quantum vectors of C2SP/CCTV's age suite (tests/fixtures/age-cctv), through the
//! `age` crate with these identities: each must succeed, find no match, or fail its header
//! exactly as the vector says.

use std::io::Read as _;

use sha2::Digest as _;

use super::HybridIdentity;

#[derive(Debug, PartialEq)]
enum Outcome {
    Success(String),
    NoMatch,
    HeaderFailure,
    Other(String),
}

fn run(vector: &[u8]) -> (String, Outcome) {
    let split = vector.windows(2).position(|w| w == b"\n\n").expect("a blank line ends the header");
    let (head, body) = (std::str::from_utf8(&vector[..split]).unwrap(), &vector[split + 2..]);
    let mut expect = String::new();
    let mut payload = String::new();
    let mut armored = false;
    let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
    for line in head.lines() {
        let (k, v) = line.split_once(": ").unwrap();
        match k {
            "expect" => expect = v.to_owned(),
            "payload" => payload = v.to_owned(),
            "armored" => armored = v == "yes",
            "identity" if v.starts_with(super::IDENTITY_PREFIX) => {
                identities.push(Box::new(HybridIdentity::parse(v).unwrap()))
            }
            "identity" => identities.push(Box::new(v.parse::<age::x25519::Identity>().unwrap())),
            _ => {}
        }
    }
    let expected = match expect.as_str() {
        "success" => Outcome::Success(payload),
        "no match" => Outcome::NoMatch,
        "header failure" => Outcome::HeaderFailure,
        other => Outcome::Other(other.to_owned()),
    };
    let ids = || identities.iter().map(|i| i.as_ref());
    // The armored reader passes binary files through, as sops' reader does.
    let _ = armored;
    let opened =
        age::Decryptor::new(age::armor::ArmoredReader::new(body)).and_then(|d| d.decrypt(ids()));
    let got = match opened {
        Ok(mut r) => {
            let mut plain = Vec::new();
            match r.read_to_end(&mut plain) {
                Ok(_) => Outcome::Success(hex::encode(sha2::Sha256::digest(&plain))),
                Err(e) => Outcome::Other(format!("payload: {e}")),
            }
        }
        Err(age::DecryptError::NoMatchingKeys) => Outcome::NoMatch,
        // The age crate reports a header its parser refuses (a non-canonical body) as
        // UnknownFormat; both are the vectors' "header failure".
        Err(age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat) => {
            Outcome::HeaderFailure
        }
        Err(e) => Outcome::Other(format!("{e:?}")),
    };
    assert_eq!(got, expected);
    (expect, got)
}

#[test]
fn cctv_hybrid_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/age-cctv");
    let mut names: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("hybrid"))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let bytes = fs_err::read(dir.join(name)).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| run(&bytes)) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
