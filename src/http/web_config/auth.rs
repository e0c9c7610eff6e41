//! Basic auth against `basic_auth_users` (bcrypt hashes), with the cache of successful checks
//! and the limits that keep a flood of wrong passwords from delaying a real scrape (see the
//! module doc of [`super`]).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;
use hyper::header::HeaderValue;
use ring::hmac;
use tokio::sync::Semaphore;

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401 with `WWW-Authenticate: Basic`.
    Denied,
    /// 503: the credentials were never checked before and every bcrypt slot, running or
    /// waiting, is taken (a flood of guesses); try again.
    Busy,
}

/// bcrypt checks that may wait per running one; beyond, a check is refused at once
/// ([`Access::Busy`]) instead of queueing behind a flood.
const WAITING_PER_CORE: usize = 4;
/// Verified credentials remembered at most (one per user in practice; bcrypt ignores a
/// password's bytes past 72, so a known password has variants: bounded all the same).
const MAX_CACHED: usize = 1024;

/// The users and what checking them needs.
pub(super) struct BasicAuth {
    /// User name → bcrypt hash.
    pub(super) users: BTreeMap<String, String>,
    /// Credentials that passed bcrypt, each as the HMAC of user, password and hash under a
    /// per-process random key: the cache holds no name, password or hash, and a change of the
    /// hash leaves the old credentials unknown.
    pub(super) cache: Mutex<HashSet<Vec<u8>>>,
    cache_key: hmac::Key,
    /// One permit per core but one (at least one): bcrypt checks running at once.
    running: Semaphore,
    /// bcrypt checks running or waiting, in total, whatever their source addresses.
    admitted: Semaphore,
    /// Source addresses with a bcrypt check waiting or running.
    pub(super) checking: Mutex<HashSet<IpAddr>>,
}

impl BasicAuth {
    /// `users` (already checked to be bcrypt hashes), with a fresh random cache key; `None` if
    /// the system has no randomness to give.
    pub(super) fn new(users: BTreeMap<String, String>) -> Option<BasicAuth> {
        let rng = ring::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()?;
        // One core stays with the probes and the scrapes: on 2 cores, a flood running bcrypt
        // on both delayed a known scraper past 100 ms.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = cores.saturating_sub(1).max(1);
        Some(BasicAuth {
            users,
            cache: Mutex::new(HashSet::new()),
            cache_key,
            running: Semaphore::new(slots),
            admitted: Semaphore::new(slots * (1 + WAITING_PER_CORE)),
            checking: Mutex::new(HashSet::new()),
        })
    }

    /// The cache's key for these credentials.
    fn credential_tag(&self, user: &str, password: &str, hash: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.cache_key);
        for part in [user, password, hash] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        context.sign().as_ref().to_vec()
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
        // Credentials that passed before skip every queue: a flood cannot delay a scraper
        // that proved its password once.
        let tag = self.credential_tag(&user, &password, &hash);
        if self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&tag)
        {
            return Access::Allowed;
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
        // And a bounded number in total, whatever the sources: a flood from many addresses
        // gets `Busy` at once instead of a queue that delays everyone after it.
        let Ok(_admitted) = self.admitted.try_acquire() else {
            return Access::Busy;
        };
        let verified = {
            let Ok(_running) = self.running.acquire().await else {
                return Access::Busy;
            };
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !verified {
            return Access::Denied;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(tag);
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
