//! Basic auth against `basic_auth_users` (bcrypt hashes), with the cache of successful checks
//! and the limits that keep a flood of wrong passwords from delaying a real scrape (see the
//! module doc of [`super`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;
use hyper::header::HeaderValue;
use ring::hmac;

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401 with `WWW-Authenticate: Basic`.
    Denied,
}

/// The users and what checking them needs.
pub(super) struct BasicAuth {
    /// User name → bcrypt hash.
    pub(super) users: BTreeMap<String, String>,
    /// User name → (the hash it was checked against, HMAC of the password that passed).
    pub(super) cache: Mutex<HashMap<String, (String, hmac::Tag)>>,
    cache_key: hmac::Key,
    /// One bcrypt check at a time.
    bcrypt_turn: tokio::sync::Mutex<()>,
    /// Source addresses with a bcrypt check waiting or running.
    pub(super) checking: Mutex<HashSet<IpAddr>>,
}

impl BasicAuth {
    /// `users` (already checked to be bcrypt hashes), with a fresh random cache key; `None` if
    /// the system has no randomness to give.
    pub(super) fn new(users: BTreeMap<String, String>) -> Option<BasicAuth> {
        let rng = ring::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()?;
        Some(BasicAuth {
            users,
            cache: Mutex::new(HashMap::new()),
            cache_key,
            bcrypt_turn: tokio::sync::Mutex::new(()),
            checking: Mutex::new(HashSet::new()),
        })
    }

    pub(super) async fn authorize(&self, header: Option<&HeaderValue>, source: IpAddr) -> Access {
        if self.users.is_empty() {
            return Access::Allowed;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Access::Denied;
        };
        // Unknown users cost nothing, so they cannot queue ahead of a real scrape.
        let Some(hash) = self.users.get(&user).cloned() else {
            return Access::Denied;
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached_hash, tag)) = cache.get(&user) {
                // hmac::verify compares in constant time.
                if *cached_hash == hash
                    && hmac::verify(&self.cache_key, password.as_bytes(), tag.as_ref()).is_ok()
                {
                    return Access::Allowed;
                }
            }
        }
        // One check per source at a time: a flood from one address waits behind itself only.
        if !self
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source)
        {
            return Access::Denied;
        }
        let _done = SourceDone(&self.checking, source);
        let verified = {
            let _turn = self.bcrypt_turn.lock().await;
            let password = password.clone();
            let hash = hash.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !verified {
            return Access::Denied;
        }
        let tag = hmac::sign(&self.cache_key, password.as_bytes());
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user, (hash, tag));
        Access::Allowed
    }
}

/// Frees a source's check slot when its check ends (or its request is dropped).
struct SourceDone<'a>(&'a Mutex<HashSet<IpAddr>>, IpAddr);

impl Drop for SourceDone<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// `Basic base64(user:password)` → (user, password).
pub(super) fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
