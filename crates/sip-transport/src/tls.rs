//! TLS certificates for the SIP-over-TLS listeners (rustls, aws-lc-rs provider).
//!
//! An operator either names a PEM certificate chain and key, or names neither and
//! gets a self-signed certificate generated once under the data directory, so a
//! fresh install answers on TLS with no setup (phones must then be told to trust it).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Names the self-signed certificate is valid for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {cert} is given without a key file: set both or neither")]
    MissingKey { cert: PathBuf },
    #[error("TLS key {key} is given without a certificate file: set both or neither")]
    MissingCert { key: PathBuf },
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("TLS {what} {path} is not usable PEM: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: pem::Error,
    },
    #[error("TLS certificate file {path} holds no CERTIFICATE section")]
    NoCertificate { path: PathBuf },
    #[error("TLS key file {path} holds no PRIVATE KEY section")]
    NoKey { path: PathBuf },
    #[error("TLS certificate {cert} with key {key} is refused: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "{present} exists but {missing} does not: provide it, or remove {present} to have a new self-signed pair generated"
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("cannot generate a self-signed TLS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The server configuration for TLS listeners. With `cert` and `key`, those PEM
/// files are loaded; with neither, `<data_dir>/tls/cert.pem` and `key.pem` are used,
/// generated (self-signed, for localhost, 127.0.0.1 and ::1) when both are absent.
pub fn server_config(cert: Option<&Path>, key: Option<&Path>, data_dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        (Some(c), None) => return Err(TlsError::MissingKey { cert: c.to_path_buf() }),
        (None, Some(k)) => return Err(TlsError::MissingCert { key: k.to_path_buf() }),
        (None, None) => self_signed_paths(data_dir)?,
    };
    let chain = load_certs(&cert)?;
    let private = load_key(&key)?;
    // An explicit provider: the process-wide default may be unset or another one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|source| TlsError::Config {
            cert: cert.clone(),
            key: key.clone(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// The default pair under `data_dir`, generated when neither file exists.
fn self_signed_paths(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (true, false) => {
            return Err(TlsError::HalfPair {
                present: cert,
                missing: key,
            });
        }
        (false, true) => {
            return Err(TlsError::HalfPair {
                present: key,
                missing: cert,
            });
        }
        (false, false) => generate(&dir, &cert, &key)?,
    }
    Ok((cert, key))
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tandem self-signed");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;

    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // Key first, each through a temporary name, so a crash never leaves a cert
    // whose key is missing half-written.
    write_atomic(key_path, key.serialize_pem().as_bytes(), true)?;
    write_atomic(cert_path, cert.pem().as_bytes(), false)?;
    tracing::info!(
        cert = %cert_path.display(),
        key = %key_path.display(),
        "generated a self-signed TLS certificate; phones must be told to trust it, or configure your own"
    );
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let werr = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600); // the private key is readable by its owner only
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(werr)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_bytes = read("certificate", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "certificate",
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem_bytes = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem_bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            what: "key",
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh, empty directory under the system temp dir.
    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tandem-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generates_then_reuses() {
        let dir = temp_dir("tls-gen");
        server_config(None, None, &dir).unwrap();
        let cert = fs::read(dir.join("tls/cert.pem")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("tls/key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Second start: the same certificate, not a new one.
        server_config(None, None, &dir).unwrap();
        assert_eq!(fs::read(dir.join("tls/cert.pem")).unwrap(), cert);
        // And the files load when named explicitly.
        server_config(Some(&dir.join("tls/cert.pem")), Some(&dir.join("tls/key.pem")), &dir).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_path_names_the_file() {
        let dir = temp_dir("tls-bad");
        let missing = dir.join("nope.pem");
        let e = server_config(Some(&missing), Some(&missing), &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.pem") && e.contains("certificate"), "{e}");

        let junk = dir.join("junk.pem");
        fs::write(&junk, "not pem at all").unwrap();
        let e = server_config(Some(&junk), Some(&junk), &dir).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("no CERTIFICATE"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_file_without_key_is_named() {
        let dir = temp_dir("tls-nokey");
        server_config(None, None, &dir).unwrap();
        let cert = dir.join("tls/cert.pem");
        // The certificate file as the key: it has no PRIVATE KEY section.
        let e = server_config(Some(&cert), Some(&cert), &dir).unwrap_err().to_string();
        assert!(e.contains("key file") && e.contains("cert.pem"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_without_the_other() {
        let dir = temp_dir("tls-half");
        let p = dir.join("c.pem");
        let e = server_config(Some(&p), None, &dir).unwrap_err().to_string();
        assert!(e.contains("without a key"), "{e}");
        let e = server_config(None, Some(&p), &dir).unwrap_err().to_string();
        assert!(e.contains("without a certificate"), "{e}");
        // A default pair with one file missing is not silently regenerated.
        fs::create_dir_all(dir.join("tls")).unwrap();
        fs::write(dir.join("tls/cert.pem"), "x").unwrap();
        let e = server_config(None, None, &dir).unwrap_err().to_string();
        assert!(e.contains("key.pem does not"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
