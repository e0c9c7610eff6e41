//! Unit tests of the web configuration: loading and refusals, basic auth; and a fuzz of hostile
//! files and headers.

use std::sync::Arc;

use base64::Engine;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("idle-drop-web-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn empty_file_means_plain_and_open() {
    let d = dir("empty");
    let config = load(&write(&d, "web.yml", "# nothing\n")).unwrap();
    assert!(config.tls.is_none());
    assert!(!config.requires_auth());
}

#[test]
fn only_bounded_regular_files_and_shallow_yaml_are_read() {
    let d = dir("bounded");
    let e = load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.reason.contains("not a regular file"), "{e}");
    let e = load(&write(
        &d,
        "w.yml",
        "tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n",
    ))
    .unwrap_err();
    assert_eq!(e.field, "tls_server_config.cert_file", "{e}");
    assert!(e.reason.contains("not a regular file"), "{e}");
    let deep = format!("basic_auth_users: {}\n", "[".repeat(100_000));
    let e = load(&write(&d, "deep.yml", &deep)).unwrap_err();
    assert!(e.reason.contains("nested more than 64 levels"), "{e}");
}

#[test]
fn errors_name_file_line_and_field() {
    let d = dir("errors");
    let e = load(&write(&d, "w1.yml", "tls_server_config:\n  cert_fil: x\n")).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("cert_fil"), "{e}");
    let e = load(&write(
        &d,
        "w2.yml",
        "tls_server_config:\n  cert_file: x.crt\n",
    ))
    .unwrap_err();
    assert_eq!(e.field, "tls_server_config.key_file", "{e}");
    let e = load(&write(
        &d,
        "w3.yml",
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    ))
    .unwrap_err();
    assert_eq!(e.field, "tls_server_config.cert_file", "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("w3.yml"), "{e}");
    let e = load(&write(
        &d,
        "w4.yml",
        "basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n  bob: plaintext\n",
    ))
    .unwrap_err();
    assert_eq!(e.field, "basic_auth_users.bob", "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(!e.to_string().contains("plaintext"), "{e}");
    let e = load(&write(
        &d,
        "w5.yml",
        "http_server_config:\n  headers:\n    Server: x\n",
    ))
    .unwrap_err();
    assert_eq!(e.field, "http_server_config.headers", "{e}");
}

fn here() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

fn basic(user: &str, pw: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_does_not_delay_a_real_scrape() {
    // Issue 9: with 100 attackers the first real (uncached) scrape took 5.4 s.
    let d = dir("flood");
    let hash = bcrypt::hash("right", 6).unwrap();
    let config = Arc::new(
        load(&write(
            &d,
            "web.yml",
            &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
        ))
        .unwrap(),
    );
    // One bcrypt check, for scale.
    let started = std::time::Instant::now();
    let probe = std::net::Ipv4Addr::new(10, 9, 9, 9).into();
    assert_eq!(
        config
            .authorize(Some(&basic("prometheus", "nope")), probe)
            .await,
        Access::Denied
    );
    let one = started.elapsed();

    let attacker: std::net::IpAddr = std::net::Ipv4Addr::new(10, 6, 6, 6).into();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..100 {
        let config = config.clone();
        let user = if i % 2 == 0 { "prometheus" } else { "mallory" };
        flood.spawn(async move {
            config
                .authorize(Some(&basic(user, &format!("guess{i}"))), attacker)
                .await
        });
    }
    tokio::task::yield_now().await;
    let started = std::time::Instant::now();
    let real = config
        .authorize(Some(&basic("prometheus", "right")), here())
        .await;
    let waited = started.elapsed();
    assert_eq!(real, Access::Allowed);
    // At most the attacker's one check ahead of ours, plus ours (slack for a busy machine).
    assert!(
        waited < one * 10,
        "real scrape waited {waited:?}, one check takes {one:?}"
    );
    while let Some(result) = flood.join_next().await {
        assert_eq!(result.unwrap(), Access::Denied);
    }
    assert!(
        config.auth.checking.lock().unwrap().is_empty(),
        "every slot freed"
    );
}

#[tokio::test]
async fn basic_auth_checks_and_caches() {
    let d = dir("auth");
    let hash = bcrypt::hash("right", 4).unwrap();
    let config = load(&write(
        &d,
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    ))
    .unwrap();
    assert_eq!(config.warnings.len(), 1, "basic auth over plain HTTP warns");
    let header = |user: &str, pw: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    };
    assert_eq!(config.authorize(None, here()).await, Access::Denied);
    assert_eq!(
        config
            .authorize(Some(&header("alice", "wrong")), here())
            .await,
        Access::Denied
    );
    assert_eq!(
        config
            .authorize(Some(&header("mallory", "right")), here())
            .await,
        Access::Denied
    );
    assert_eq!(
        config
            .authorize(Some(&header("alice", "right")), here())
            .await,
        Access::Allowed
    );
    {
        // One entry, and nothing in it a reader could use: no name, password or hash.
        let cache = config.auth.cache.lock().unwrap();
        assert_eq!(cache.len(), 1);
        let entry = cache.iter().next().unwrap();
        for secret in ["alice", "right", hash.as_str()] {
            assert!(!entry.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
    // Cached: the right password still passes, a wrong one still fails.
    assert_eq!(
        config
            .authorize(Some(&header("alice", "right")), here())
            .await,
        Access::Allowed
    );
    assert_eq!(
        config
            .authorize(Some(&header("alice", "wrong")), here())
            .await,
        Access::Denied
    );
    let bearer = HeaderValue::from_static("Bearer abc");
    assert_eq!(
        config.authorize(Some(&bearer), here()).await,
        Access::Denied
    );
}

/// Hostile web configuration files and `Authorization` headers: never a panic; a refusal gives
/// the file and a field or line, and never repeats a password hash.
mod fuzz {
    use super::super::auth::basic_credentials;
    use super::*;
    use crate::postgres::dsn::fuzz::{budget, leaks, text, unicode_password};
    use proptest::prelude::*;
    use serde_yaml::{Mapping, Value};

    const KEYS: &[&str] = &[
        "tls_server_config",
        "http_server_config",
        "basic_auth_users",
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "max_version",
        "cipher_suites",
        "headers",
        "http2",
        "Strict-Transport-Security",
        "X-Frame-Options",
        "TLS13",
        "RequireAndVerifyClientCert",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(Value::from),
            3 => text(8).prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(Value::from),
            1 => text(6).prop_map(Value::from),
        ]
    }

    /// A YAML document shaped like a web config: known and unknown keys, nested up to 3 deep.
    fn document() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                3 => prop::collection::vec((key(), inner.clone()), 0..4)
                    .prop_map(|kv| Value::Mapping(kv.into_iter().collect::<Mapping>())),
                1 => prop::collection::vec(inner, 0..3).prop_map(Value::Sequence),
            ]
        })
    }

    /// Users whose "hash" is a marked password: never a valid bcrypt hash, never to be repeated.
    fn users() -> impl Strategy<Value = Value> {
        prop::collection::vec((text(6), unicode_password()), 1..3).prop_map(|users| {
            let mut map = Mapping::new();
            map.insert(
                "basic_auth_users".into(),
                Value::Mapping(
                    users
                        .into_iter()
                        .map(|(u, h)| (Value::from(u), Value::from(h)))
                        .collect(),
                ),
            );
            Value::Mapping(map)
        })
    }

    fn check(path: &Path, text: &str) -> Result<(), TestCaseError> {
        std::fs::write(path, text).unwrap();
        if let Err(e) = load(path) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with(&path.display().to_string()), "{shown}");
            prop_assert!(!leaks(&shown), "{text}\n{shown}");
            prop_assert!(!leaks(&format!("{e:?}")), "{text}\n{e:?}");
            if serde_yaml::from_str::<Value>(text).is_ok() {
                prop_assert!(
                    e.line.is_some() || !e.field.is_empty(),
                    "neither line nor field: {shown}\n{text}"
                );
            }
        }
        Ok(())
    }

    /// Fuzz budget: 3 x 256 web configurations and 512 headers per run.
    const WEB_CASES: u32 = 256;

    proptest! {
        #![proptest_config(budget(WEB_CASES))]

        #[test]
        fn any_text_as_a_web_config_never_panics(text in text(60)) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            check(&d.join("text.yml"), &text)?;
        }

        #[test]
        fn web_config_shaped_yaml_names_field_or_line(doc in document()) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            check(&d.join("doc.yml"), &serde_yaml::to_string(&doc).unwrap())?;
        }

        /// An invalid hash is refused naming the user, never repeating the hash.
        #[test]
        fn a_bad_user_hash_is_refused_without_repeating_it(doc in users()) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            let text = serde_yaml::to_string(&doc).unwrap();
            let path = d.join("users.yml");
            check(&path, &text)?;
            let e = load(&path).unwrap_err();
            prop_assert!(e.field.starts_with("basic_auth_users"), "{e}");
        }
    }

    proptest! {
        #![proptest_config(budget(2 * WEB_CASES))]

        /// Any header bytes: no panic; what is read as credentials is exactly what was sent.
        #[test]
        fn any_authorization_header_never_panics(
            raw in prop::collection::vec(any::<u8>(), 0..40),
            user in text(6),
            password in text(6),
        ) {
            if let Ok(header) = HeaderValue::from_bytes(&raw) {
                let _ = basic_credentials(&header);
            }
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{password}"));
            if let Ok(header) = HeaderValue::from_str(&format!("Basic {encoded}")) {
                let read = basic_credentials(&header);
                if !user.contains(':') {
                    prop_assert_eq!(read, Some((user, password)));
                }
            }
        }
    }
}
