//! What a target takes from elsewhere: its DSN (`dsn`, `dsn_env`, `dsn_file`), its password
//! (`password_file`, `password_env`) and its CA bundle (`ca_file`, or the DSN's `sslrootcert`).
//!
//! Files are relative to the file that names them. A target file (written by whoever may write
//! a ConfigMap or run a generator, not necessarily the exporter's operator) may only name files
//! that resolve, after every symlink, inside its own folder or a folder of the main
//! configuration's `target_files_allowed_dirs`: `password_file: ../../../../etc/shadow` with a
//! DSN pointed at a server of one's own would otherwise read any file the exporter can and send
//! it there. The resolved path is opened without following a symlink a second time.
//!
//! Nothing read is ever quoted in an error: a refusal names the field and the file.

use std::path::{Path, PathBuf};

use super::super::locate::Step::{self, Index, Key};
use super::super::{
    raw, read_file_at, read_opened, relative_to, MAX_DSN_FILE_BYTES, MAX_FILE_BYTES,
    MAX_PASSWORD_FILE_BYTES,
};
use super::{Checked, Validator, UNSET_ENV_DSN};
use crate::postgres::dsn;
use crate::postgres::tls::CaBundle;
use crate::secret::Secret;

/// Where a target's DSN is given: which of its three fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DsnSource {
    /// `dsn`: written into the configuration.
    Dsn,
    /// `dsn_env`: the application's URL in an environment variable.
    DsnEnv,
    /// `dsn_file`: the application's URL in a file.
    DsnFile,
}

impl DsnSource {
    /// The field's name, as errors name it.
    pub(super) fn field(self) -> &'static str {
        match self {
            DsnSource::Dsn => "dsn",
            DsnSource::DsnEnv => "dsn_env",
            DsnSource::DsnFile => "dsn_file",
        }
    }
}

impl Validator<'_> {
    /// The target's DSN from `dsn`, `dsn_env` or `dsn_file` (exactly one), parsed; with the
    /// field it came from. Errors name that field, and the variable or file, never the value.
    pub(super) fn dsn(
        &self,
        i: usize,
        raw: &raw::RawTarget,
        warnings: &mut Vec<String>,
    ) -> Checked<(DsnSource, dsn::ParsedDsn)> {
        let at = |source: DsnSource| [Key("targets"), Index(i), Key(source.field())];
        let given: Vec<DsnSource> = [
            (DsnSource::Dsn, raw.dsn.is_some()),
            (DsnSource::DsnEnv, raw.dsn_env.is_some()),
            (DsnSource::DsnFile, raw.dsn_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(source, set)| set.then_some(source))
        .collect();
        let source = match given[..] {
            [source] => source,
            [] => {
                return Err(self.error(
                    &[Key("targets"), Index(i)],
                    "`dsn` is required (or `dsn_env` or `dsn_file` with the application's URL)",
                ))
            }
            [_, second, ..] => {
                return Err(self.error(
                    &at(second),
                    "give the DSN in one place only: dsn, dsn_env or dsn_file",
                ))
            }
        };
        let (text, origin) = match source {
            DsnSource::DsnEnv => {
                let var = raw.dsn_env.as_deref().unwrap_or_default();
                match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => {
                        (v.trim().to_string(), format!("the URL in {var}: "))
                    }
                    _ => {
                        self.unset_env(&at(source), var, warnings)?;
                        (UNSET_ENV_DSN.to_string(), String::new())
                    }
                }
            }
            DsnSource::DsnFile => {
                let file = raw.dsn_file.as_deref().unwrap_or_default();
                let (path, text) = self.one_line(&at(source), file, MAX_DSN_FILE_BYTES, "a DSN")?;
                (
                    text.trim().to_string(),
                    format!("the DSN in {}: ", path.display()),
                )
            }
            DsnSource::Dsn => (raw.dsn.clone().unwrap_or_default(), String::new()),
        };
        let parsed =
            dsn::parse(&text).map_err(|e| self.error(&at(source), format!("{origin}{e}")))?;
        Ok((source, parsed))
    }

    /// The password from `password_file` or `password_env` (at most one, and not beside a
    /// password in the DSN); `None` when neither is given.
    pub(super) fn password(
        &self,
        i: usize,
        raw: &raw::RawTarget,
        dsn_has_password: bool,
        warnings: &mut Vec<String>,
    ) -> Checked<Option<Secret>> {
        let at = |field: &'static str| [Key("targets"), Index(i), Key(field)];
        let sources = [
            raw.password_file.is_some(),
            raw.password_env.is_some(),
            dsn_has_password,
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            let field = if raw.password_file.is_some() {
                "password_file"
            } else {
                "password_env"
            };
            return Err(self.error(
                &at(field),
                "give the password in one place only: password_file, password_env or the DSN",
            ));
        }
        if let Some(file) = &raw.password_file {
            let at = at("password_file");
            let (_, text) = self.one_line(&at, file, MAX_PASSWORD_FILE_BYTES, "a password")?;
            return Ok(Some(Secret::new(text)));
        }
        if let Some(var) = &raw.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                _ => self
                    .unset_env(&at("password_env"), var, warnings)
                    .map(|()| None),
            };
        }
        Ok(None)
    }

    /// A file holding one line (`what`: a DSN, a password): UTF-8, not empty, nothing but line
    /// breaks around that line (they are dropped). A second line was ignored (a DSN) or sent as
    /// part of the password: either way not what was meant, so it is refused.
    fn one_line(
        &self,
        at: &[Step<'_>],
        file: &str,
        limit: u64,
        what: &str,
    ) -> Checked<(PathBuf, String)> {
        let (path, bytes) = self.read_named(at, file, limit)?;
        let shown = path.display();
        // Never quote the bytes: they hold the password.
        let text = String::from_utf8(bytes)
            .map_err(|_| self.error(at, format!("{shown} is not UTF-8 text")))?;
        let body = text.trim_matches(['\r', '\n']);
        if body.trim().is_empty() {
            return Err(self.error(at, format!("{shown} is empty")));
        }
        if body.contains(['\r', '\n']) {
            return Err(self.error(
                at,
                format!("{shown} holds more than one line; it must hold {what} alone, on one line"),
            ));
        }
        Ok((path, body.to_string()))
    }

    /// A PEM bundle of CA certificates, each parsed as the TLS setup will.
    pub(super) fn ca_bundle(&self, at: &[Step<'_>], file: &str) -> Checked<CaBundle> {
        let (path, pem) = self.read_named(at, file, MAX_FILE_BYTES)?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(at, format!("{}: not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(self.error(at, format!("{} holds no certificate", path.display())));
        }
        // Parse each as the TLS setup will (a CERTIFICATE block holding something else failed
        // only at the first connection, so the target was never probed).
        let mut roots = rustls::RootCertStore::empty();
        for (n, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                self.error(
                    at,
                    format!(
                        "{}: certificate {} of the file is not a valid certificate: {e}",
                        path.display(),
                        n + 1
                    ),
                )
            })?;
        }
        Ok(CaBundle { path, pem })
    }

    /// Reads a file this file names (relative to its folder), at most `limit` bytes; in a
    /// target file, only where it may (see the module doc). Returns the path as written
    /// (joined to the folder) and the bytes.
    fn read_named(&self, at: &[Step<'_>], file: &str, limit: u64) -> Checked<(PathBuf, Vec<u8>)> {
        let path = relative_to(self.path, file);
        let cannot =
            |e: std::io::Error| self.error(at, format!("cannot read {}: {e}", path.display()));
        let Some(allowed) = self.allowed else {
            let bytes = read_file_at(&path, limit, false).map_err(cannot)?;
            return Ok((path, bytes));
        };
        let real = path.canonicalize().map_err(cannot)?;
        let folder = folder_of(self.path);
        let inside = std::iter::once(folder.as_path())
            .chain(allowed.iter().map(PathBuf::as_path))
            .filter_map(|dir| dir.canonicalize().ok())
            .find(|dir| real.starts_with(dir));
        let Some(dir) = inside else {
            return Err(self.error(
                at,
                format!(
                    "{} resolves to {}, outside this target file's folder {}: a target file may name only files in its own folder or in target_files_allowed_dirs",
                    path.display(),
                    real.display(),
                    folder.display()
                ),
            ));
        };
        let beneath = real.strip_prefix(&dir).unwrap_or(&real);
        let bytes = match open_beneath(&dir, beneath) {
            Some(opened) => opened.and_then(|file| read_opened(file, limit)),
            // No openat2 (Linux before 5.6): the resolved path, without following a symlink
            // swapped in for its last part since.
            None => read_file_at(&real, limit, true),
        }
        .map_err(cannot)?;
        Ok((path, bytes))
    }
}

/// Opens `path` (relative) under `dir` so that no step of its resolution leaves `dir`:
/// `openat2` with `RESOLVE_BENEATH`, so a folder on the path swapped for a link to elsewhere
/// after the check above is refused by the kernel, not followed. `None` where the kernel has
/// no `openat2`.
fn open_beneath(dir: &Path, path: &Path) -> Option<std::io::Result<std::fs::File>> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = match rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(e) => return Some(Err(e.into())),
    };
    let opened = openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    );
    match opened {
        Err(rustix::io::Errno::NOSYS) => None,
        Err(rustix::io::Errno::XDEV) => Some(Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "its path left the allowed folder while it was being opened",
        ))),
        other => Some(other.map(std::fs::File::from).map_err(Into::into)),
    }
}

/// The folder `file` is in (the working directory for a bare name).
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::open_beneath;
    use std::os::unix::fs::symlink;

    /// The check resolves the path first; this is what stops a folder on the path that is
    /// swapped for a link between that check and the open.
    #[test]
    fn a_path_that_leaves_the_folder_through_a_link_is_refused_by_the_open_itself() {
        let root = tempfile::tempdir().unwrap();
        let (inside, outside) = (root.path().join("inside"), root.path().join("outside"));
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("sub/password"), "ok").unwrap();
        std::fs::write(outside.join("password"), "secret").unwrap();
        symlink("sub", inside.join("same")).unwrap();
        symlink("../outside", inside.join("away")).unwrap();
        symlink(&outside, inside.join("absolute")).unwrap();

        let open = |path: &str| open_beneath(&inside, std::path::Path::new(path));
        let Some(opened) = open("sub/password") else {
            eprintln!("no openat2 on this kernel: the O_NOFOLLOW fallback is used");
            return;
        };
        assert!(opened.is_ok());
        assert!(
            open("same/password").unwrap().is_ok(),
            "a link that stays inside"
        );
        for escape in ["away/password", "absolute/password", "../outside/password"] {
            let error = open(escape).unwrap().expect_err(escape);
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{escape}: {error}"
            );
        }
    }
}
