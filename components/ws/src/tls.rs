//! TLS for the transport's servers and clients (rustls, ring provider).
//!
//! - [`ServerTls`] (`tls` of a server block, of `http_input` and of the
//!   admin server): a certificate chain and its key, both PEM; with
//!   `client_ca_file`, every client must present a certificate signed by
//!   that CA (mutual TLS).
//! - [`ClientTls`] (`client.tls`, and the CLI's `--ca-file`): the CA that
//!   signs the server's certificate (the system's roots when none), and a
//!   client certificate for servers that ask for one.
//!
//! Files are read when the component starts (and so again when a reload
//! restarts it); every error names the file and the key it came from.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `tls` of a server: `{cert_file, key_file, client_ca_file?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// `tls` of a client: `{ca_file?, cert_file?, key_file?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// Trust only this CA (PEM) instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM), for servers that require one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn roots(path: &Path, what: &str) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path, what)? {
        store
            .add(c)
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(store)
}

impl ServerTls {
    /// Check that every syntactic requirement holds (paths not empty), for
    /// config validation; the files are read by [`ServerTls::config`].
    pub fn validate(&self, base: &str) -> Vec<fednode_kit::ConfigError> {
        let mut errors = Vec::new();
        for (key, p) in [
            ("cert_file", Some(&self.cert_file)),
            ("key_file", Some(&self.key_file)),
            ("client_ca_file", self.client_ca_file.as_ref()),
        ] {
            if p.is_some_and(|p| p.as_os_str().is_empty()) {
                errors.push(fednode_kit::ConfigError::new(
                    format!("{base}.{key}"),
                    "must not be empty",
                ));
            }
        }
        errors
    }

    /// Read the files and build the rustls server side. `base` names the
    /// config block in errors (`components.ws_in.config.server.tls`).
    pub fn config(&self, base: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = certs(&self.cert_file, &format!("{base}.cert_file"))?;
        let key = key(&self.key_file, &format!("{base}.key_file"))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{base}: {e}"))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let what = format!("{base}.client_ca_file");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, &what)?),
                    provider(),
                )
                .build()
                .map_err(|e| format!("{what} {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("{base}: the certificate and key do not go together: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// [`ServerTls::config`] as an acceptor.
    pub fn acceptor(&self, base: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
        self.config(base).map(tokio_rustls::TlsAcceptor::from)
    }
}

impl ClientTls {
    /// Check the pairing of `cert_file` and `key_file`, for config
    /// validation; the files are read by [`ClientTls::config`].
    pub fn validate(&self, base: &str) -> Vec<fednode_kit::ConfigError> {
        let mut errors = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push(fednode_kit::ConfigError::new(
                base.to_string(),
                "cert_file and key_file go together (a client certificate needs its key)",
            ));
        }
        for (key, p) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                errors.push(fednode_kit::ConfigError::new(
                    format!("{base}.{key}"),
                    "must not be empty",
                ));
            }
        }
        errors
    }

    /// Read the files and build the rustls client side.
    pub fn config(&self, base: &str) -> Result<Arc<rustls::ClientConfig>, String> {
        let store = match &self.ca_file {
            Some(ca) => roots(ca, &format!("{base}.ca_file"))?,
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{base}: {e}"))?
            .with_root_certificates(store);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(
                    certs(c, &format!("{base}.cert_file"))?,
                    key(k, &format!("{base}.key_file"))?,
                )
                .map_err(|e| {
                    format!("{base}: the client certificate and key do not go together: {e}")
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// [`ClientTls::config`] as a connector for `wss://` URLs.
    pub fn connector(&self, base: &str) -> Result<tokio_tungstenite::Connector, String> {
        self.config(base).map(tokio_tungstenite::Connector::Rustls)
    }
}

/// A server's TLS, with its files read again on demand (SIGHUP): the
/// connections that follow use the new certificate, the open ones keep
/// theirs.
pub struct Acceptor {
    spec: ServerTls,
    /// The config block, for errors (`components.hub.config.server.tls`).
    base: String,
    current: arc_swap::ArcSwap<tokio_rustls::TlsAcceptor>,
}

impl Acceptor {
    /// Read the files; the error names the key and the file.
    pub fn load(spec: &ServerTls, base: &str) -> Result<Arc<Acceptor>, String> {
        Ok(Arc::new(Acceptor {
            current: arc_swap::ArcSwap::from_pointee(spec.acceptor(base)?),
            spec: spec.clone(),
            base: base.to_string(),
        }))
    }

    /// What new connections use.
    pub fn get(&self) -> tokio_rustls::TlsAcceptor {
        (**self.current.load()).clone()
    }

    /// Read the files again; on an error the previous certificate stays.
    pub fn reread(&self) -> Result<(), String> {
        let fresh = self.spec.acceptor(&self.base)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }
}

/// A client's TLS files, read before each connection attempt.
#[derive(Debug, Clone)]
pub struct ClientTlsSource {
    pub spec: ClientTls,
    /// The config block, for errors.
    pub base: String,
}

impl ClientTlsSource {
    /// Read the files now.
    pub fn load(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.spec.config(&self.base)
    }
}

/// The TLS of one WebSocket endpoint, its files read when the component
/// starts (so that a bad file fails the start, naming itself).
#[derive(Clone, Default)]
pub struct EndpointTls {
    /// Server mode with `server.tls`.
    pub acceptor: Option<Arc<Acceptor>>,
    /// Client mode with `client.tls`.
    pub client: Option<ClientTlsSource>,
}

impl EndpointTls {
    /// Read the `server.tls` and `client.tls` files of component
    /// `component`; the error names the key and the file.
    pub fn load(
        component: &str,
        server: Option<&ServerTls>,
        client: Option<&ClientTls>,
    ) -> Result<EndpointTls, fednode_kit::StartError> {
        let base = |block: &str| format!("components.{component}.config.{block}.tls");
        let client = client.map(|spec| ClientTlsSource {
            spec: spec.clone(),
            base: base("client"),
        });
        if let Some(c) = &client {
            c.load().map_err(fednode_kit::StartError::new)?;
        }
        Ok(EndpointTls {
            acceptor: server
                .map(|t| Acceptor::load(t, &base("server")))
                .transpose()
                .map_err(fednode_kit::StartError::new)?,
            client,
        })
    }

    /// Read the server's files again (SIGHUP); the client's are read
    /// before every attempt anyway.
    pub fn reread(&self) -> Result<(), String> {
        self.acceptor.as_ref().map_or(Ok(()), |a| a.reread())
    }
}

/// The client certificate a peer presented, as the server's connection
/// handler sees it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject's attributes, `CN=edge-01,O=acme` (most significant
    /// last, as written in the certificate), or `unreadable subject`.
    pub subject: Arc<str>,
}

impl PeerCertificate {
    /// Read the subject of a DER certificate (the verifier has already
    /// checked it; this only names it).
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        PeerCertificate {
            subject: subject_of(der)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unreadable subject".into())
                .into(),
        }
    }
}

/// One DER element: (tag, contents, the rest after it).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject Name of an X.509 certificate, as `KEY=value,…`.
fn subject_of(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = der(cert)?; // Certificate
    let (_, mut tbs, _) = der(cert)?; // TBSCertificate
                                      // [0] version (optional), serialNumber, signature, issuer, validity,
                                      // subject.
    let (tag, _, rest) = der(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (_, mut name, _) = der(tbs)?;
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (_, mut set, rest) = der(name)?; // RelativeDistinguishedName
        name = rest;
        while !set.is_empty() {
            let (_, atv, rest) = der(set)?; // AttributeTypeAndValue
            set = rest;
            let (_, oid, value) = der(atv)?;
            let (vtag, value, _) = der(value)?;
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                _ => continue,
            };
            // UTF8String, PrintableString, IA5String, TeletexString.
            if matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) {
                parts.push(format!("{key}={}", String::from_utf8_lossy(value)));
            }
        }
    }
    Some(parts.join(","))
}

/// The system's trusted roots; an empty store is an error (nothing could
/// be verified).
fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no trusted root certificates found on this system{}; set tls.ca_file",
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_needs_its_key_and_paths_are_not_empty() {
        let lone = ClientTls {
            cert_file: Some("edge.pem".into()),
            ..ClientTls::default()
        };
        let errors = lone.validate("c.client.tls");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0]
            .to_string()
            .contains("cert_file and key_file go together"));
        let empty = ServerTls {
            cert_file: "".into(),
            key_file: "k.pem".into(),
            client_ca_file: None,
        };
        assert_eq!(
            empty.validate("s.tls")[0].to_string(),
            "s.tls.cert_file: must not be empty"
        );
    }

    #[test]
    fn missing_and_malformed_files_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let spec = ServerTls {
            cert_file: junk.clone(),
            key_file: dir.path().join("absent.key"),
            client_ca_file: None,
        };
        let e = spec.config("x.tls").unwrap_err();
        assert!(e.starts_with("x.tls.cert_file "), "{e}");
        assert!(e.contains("no PEM certificate"), "{e}");
        let client = ClientTls {
            ca_file: Some(dir.path().join("absent.pem")),
            ..ClientTls::default()
        };
        let e = client.config("y.tls").unwrap_err();
        assert!(
            e.starts_with("y.tls.ca_file ") && e.contains("absent.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_subject_reads_from_der() {
        // Not a certificate: named as unreadable, never a panic.
        assert_eq!(
            &*PeerCertificate::from_der(&[0x30, 0x82]).subject,
            "unreadable subject"
        );
        assert_eq!(
            &*PeerCertificate::from_der(&[]).subject,
            "unreadable subject"
        );
    }
}
