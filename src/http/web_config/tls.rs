//! `tls_server_config` → a rustls server configuration: certificate and key, TLS versions,
//! client certificate verification. What exporter-toolkit allows but we would silently ignore is
//! refused here, naming the field (see the module doc of [`super`]).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::raw::RawTls;
use super::Checker;
use crate::config::locate::Step::{self, Key};
use crate::config::ConfigError;

/// A field path under `tls_server_config`.
fn at(field: &'static str) -> [Step<'static>; 2] {
    [Key("tls_server_config"), Key(field)]
}

/// The client certificate check `client_auth_type` asks for: `None` for none, else whether a
/// client may come without one.
type ClientAuth = Option<bool>;

impl Checker<'_> {
    /// The TLS acceptor `raw` describes; `None` for a section without certificate and key
    /// (plain HTTP, as in exporter-toolkit). Each file read is added to `inputs`.
    pub(super) fn tls(
        &self,
        raw: RawTls,
        inputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Option<TlsAcceptor>, ConfigError> {
        self.refuse_what_we_would_ignore(&raw)?;
        let Some((cert_file, key_file)) = self.cert_and_key_files(&raw)? else {
            return Ok(None);
        };
        let cert_pem = self.read(&at("cert_file"), &cert_file, inputs)?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(&at("cert_file"), format!("{cert_file}: not PEM: {e}")))?;
        if certs.is_empty() {
            return self.refuse("cert_file", &format!("{cert_file} holds no certificate"));
        }
        let key_pem = self.read(&at("key_file"), &key_file, inputs)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| {
                self.error(
                    &at("key_file"),
                    format!("{key_file} holds no PEM private key"),
                )
            })?;

        let versions = self.protocol_versions(&raw)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| self.error(&at("min_version"), e.to_string()))?;
        let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
        let builder = match (self.client_auth(auth_type)?, &raw.client_ca_file) {
            (None, None) => builder.with_no_client_auth(),
            (None, Some(_)) => {
                return self.refuse(
                    "client_ca_file",
                    "given without a client_auth_type that verifies (VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                )
            }
            (Some(_), None) => {
                return self.refuse("client_ca_file", &format!("{auth_type} needs client_ca_file"))
            }
            (Some(optional), Some(ca_file)) => builder.with_client_cert_verifier(
                self.client_verifier(ca_file, optional, provider, inputs)?,
            ),
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            self.error(
                &at("key_file"),
                format!("{key_file} does not go with {cert_file}: {e}"),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn refuse<T>(&self, field: &'static str, why: &str) -> Result<T, ConfigError> {
        Err(self.error(&at(field), why.to_string()))
    }

    /// exporter-toolkit fields we would otherwise silently ignore.
    fn refuse_what_we_would_ignore(&self, raw: &RawTls) -> Result<(), ConfigError> {
        if raw.cert.is_some() || raw.key.is_some() || raw.client_ca.is_some() {
            let field = if raw.cert.is_some() {
                "cert"
            } else if raw.key.is_some() {
                "key"
            } else {
                "client_ca"
            };
            return self.refuse(
                field,
                "inline certificates and keys are not supported; use cert_file, key_file, client_ca_file",
            );
        }
        let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if set(&raw.cipher_suites) {
            return self.refuse(
                "cipher_suites",
                "not supported: rustls offers only modern AEAD suites; remove the field",
            );
        }
        if set(&raw.curve_preferences) {
            return self.refuse(
                "curve_preferences",
                "not supported: rustls picks the key exchange groups; remove the field",
            );
        }
        if set(&raw.client_allowed_sans) {
            return self.refuse(
                "client_allowed_sans",
                "not supported; restrict clients with client_ca_file instead",
            );
        }
        Ok(())
    }

    /// The certificate and key files; `None` when neither is set (plain HTTP).
    fn cert_and_key_files(&self, raw: &RawTls) -> Result<Option<(String, String)>, ConfigError> {
        match (&raw.cert_file, &raw.key_file) {
            (None, None) => {
                // exporter-toolkit: a tls_server_config without cert and key serves plain HTTP,
                // but then nothing else in it may be set.
                if raw.client_ca_file.is_some() || raw.client_auth_type.is_some() {
                    return self.refuse(
                        "cert_file",
                        "client certificates need cert_file and key_file",
                    );
                }
                Ok(None)
            }
            (Some(_), None) => self.refuse("key_file", "missing: cert_file needs key_file"),
            (None, Some(_)) => self.refuse("cert_file", "missing: key_file needs cert_file"),
            (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        }
    }

    /// The TLS versions between `min_version` and `max_version` (TLS 1.2 and 1.3 only).
    fn protocol_versions(
        &self,
        raw: &RawTls,
    ) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
        let version =
            |field: &'static str, value: &Option<String>, default: &'static str| match value
                .as_deref()
                .unwrap_or(default)
            {
                "TLS12" => Ok(12),
                "TLS13" => Ok(13),
                "TLS10" | "TLS11" => {
                    self.refuse(field, "TLS 1.0 and 1.1 are not supported (TLS12 or TLS13)")
                }
                other => self.refuse(
                    field,
                    &format!("`{other}` is not a TLS version (TLS12 or TLS13)"),
                ),
            };
        let min = version("min_version", &raw.min_version, "TLS12")?;
        let max = version("max_version", &raw.max_version, "TLS13")?;
        if min > max {
            return self.refuse("min_version", "is above max_version");
        }
        Ok(
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect(),
        )
    }

    /// What `client_auth_type` asks for; the modes that accept unchecked certificates are refused.
    fn client_auth(&self, auth_type: &str) -> Result<ClientAuth, ConfigError> {
        match auth_type {
            "" | "NoClientCert" => Ok(None),
            "VerifyClientCertIfGiven" => Ok(Some(true)),
            "RequireAndVerifyClientCert" => Ok(Some(false)),
            "RequestClientCert" | "RequireAnyClientCert" => self.refuse(
                "client_auth_type",
                &format!("{auth_type} accepts certificates without checking them; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ),
            other => self.refuse(
                "client_auth_type",
                &format!("`{other}` is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ),
        }
    }

    /// Verifies client certificates against `client_ca_file`; `optional` lets clients come
    /// without one.
    fn client_verifier(
        &self,
        ca_file: &str,
        optional: bool,
        provider: Arc<rustls::crypto::CryptoProvider>,
        inputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
        let ca_pem = self.read(&at("client_ca_file"), ca_file, inputs)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            let cert = cert.map_err(|e| {
                self.error(&at("client_ca_file"), format!("{ca_file}: not PEM: {e}"))
            })?;
            roots
                .add(cert)
                .map_err(|e| self.error(&at("client_ca_file"), format!("{ca_file}: {e}")))?;
        }
        if roots.is_empty() {
            return self.refuse("client_ca_file", &format!("{ca_file} holds no certificate"));
        }
        let mut verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if optional {
            verifier = verifier.allow_unauthenticated();
        }
        verifier
            .build()
            .map_err(|e| self.error(&at("client_ca_file"), e.to_string()))
    }
}
