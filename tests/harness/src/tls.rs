//! Throwaway certificates for TLS tests, made at test time with the
//! `openssl` command line: a CA, and server and client certificates it
//! signs. Nothing is checked in, nothing outlives the test's temp dir.
//!
//! The certificates are what a strict verifier (rustls' webpki) accepts: a
//! CA with `basicConstraints CA:TRUE`, leaves with `CA:FALSE`, the right
//! extended key usage, and the server's names as subject alternative names
//! (the common name is not looked at). Keys are P-256 (fast to make), each
//! written with mode 0600.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process;

const MISSING_OPENSSL: &str = "openssl not found: install with `apt-get install -y openssl`";
/// Long enough for any test run, short enough that a leaked file is useless.
const DAYS: &str = "30";

/// A CA in a directory: `<name>.crt` (its certificate, what a client is
/// given as `sslrootcert`) and `<name>.key`.
///
/// ```no_run
/// let dir = tempfile::tempdir().unwrap();
/// let ca = fednode_testkit::TestCa::new(dir.path(), "ca");
/// let (cert, key) = ca.issue_server(dir.path(), "server", &["localhost", "127.0.0.1"]);
/// ```
#[derive(Debug, Clone)]
pub struct TestCa {
    cert: PathBuf,
    key: PathBuf,
    serial: PathBuf,
}

impl TestCa {
    /// A new self-signed CA, unrelated to any other, written into `dir`
    /// (which must exist). Panics with openssl's output if it fails.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        new_key(&key);
        run(openssl()
            .args(["req", "-x509", "-new", "-sha256", "-days", DAYS, "-key"])
            .arg(&key)
            .arg("-subj")
            .arg(format!("/CN=fednode test CA {name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-out")
            .arg(&cert));
        TestCa {
            serial: dir.join(format!("{name}.srl")),
            cert,
            key,
        }
    }

    /// The CA certificate (PEM).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// A server certificate for `names` (DNS names or IP addresses, all put
    /// in the subject alternative name): `(<dir>/<name>.crt,
    /// <dir>/<name>.key)`.
    pub fn issue_server(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let san: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect();
        let ext = format!(
            "basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = {}\n",
            san.join(",")
        );
        self.issue(dir, name, names.first().copied().unwrap_or(name), &ext)
    }

    /// A client certificate whose common name is `user` (what PostgreSQL's
    /// `cert` authentication compares with the user name): `(<dir>/<name>.crt,
    /// <dir>/<name>.key)`.
    pub fn issue_client(&self, dir: &Path, name: &str, user: &str) -> (PathBuf, PathBuf) {
        let ext = "basicConstraints = critical,CA:FALSE\n\
                   keyUsage = critical,digitalSignature\n\
                   extendedKeyUsage = clientAuth\n";
        self.issue(dir, name, user, ext)
    }

    fn issue(&self, dir: &Path, name: &str, cn: &str, ext: &str) -> (PathBuf, PathBuf) {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let csr = dir.join(format!("{name}.csr"));
        let ext_file = dir.join(format!("{name}.ext"));
        new_key(&key);
        fs::write(&ext_file, ext).unwrap_or_else(|e| panic!("write {}: {e}", ext_file.display()));
        run(openssl()
            .args(["req", "-new", "-key"])
            .arg(&key)
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-out")
            .arg(&csr));
        run(openssl()
            .args(["x509", "-req", "-sha256", "-days", DAYS, "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-CAserial")
            .arg(&self.serial)
            .arg("-extfile")
            .arg(&ext_file)
            .arg("-out")
            .arg(&cert));
        let _ = fs::remove_file(&csr);
        let _ = fs::remove_file(&ext_file);
        (cert, key)
    }
}

/// A P-256 private key at `path`, mode 0600.
fn new_key(path: &Path) {
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(path));
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 0600 {}: {e}", path.display()));
}

/// An `openssl` command (panics naming the package when there is none).
fn openssl() -> Command {
    let bin = process::find_on_path("openssl").unwrap_or_else(|| panic!("{MISSING_OPENSSL}"));
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd`; panics with its output if it fails.
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl verify` of `cert` against `ca`, as a server would check it.
    fn verifies(ca: &Path, cert: &Path, purpose: &str) -> bool {
        openssl()
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(cert)
            .output()
            .expect("run openssl verify")
            .status
            .success()
    }

    #[test]
    fn a_ca_signs_server_and_client_certificates_that_another_ca_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let other = TestCa::new(dir.path(), "other");
        let (server, server_key) =
            ca.issue_server(dir.path(), "server", &["localhost", "127.0.0.1"]);
        let (client, client_key) = ca.issue_client(dir.path(), "client", "postgres");
        assert!(verifies(ca.cert(), &server, "sslserver"));
        assert!(verifies(ca.cert(), &client, "sslclient"));
        assert!(!verifies(other.cert(), &server, "sslserver"));
        assert!(
            !verifies(ca.cert(), &client, "sslserver"),
            "a client cert serves"
        );
        for key in [&server_key, &client_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let text = openssl()
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&server)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
            "{text}"
        );
    }
}
