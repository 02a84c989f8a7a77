//! A lab certificate authority: its PEM file (what VAULT_CACERT names) and server
//! certificates signed by it, valid or not, for the lab's TLS listeners.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

/// The lab's DNS name for a server (also in every valid certificate).
pub const LAB_NAME: &str = "vault.lab.test";

/// When a server certificate is valid.
pub enum Validity {
    /// From yesterday for a year.
    Current,
    /// Ended a year ago.
    Expired,
}

/// A CA in a temporary directory.
pub struct LabCa {
    dir: tempfile::TempDir,
    key: KeyPair,
    cert: Certificate,
}

impl LabCa {
    /// A new CA named `name`; its certificate is written to `ca.pem`.
    pub fn new(name: &str) -> LabCa {
        let dir = tempfile::tempdir().expect("tempdir for the CA");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        LabCa { dir, key, cert }
    }

    /// The CA certificate's PEM file.
    pub fn pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory holding only the CA's PEM file (what VAULT_CAPATH names).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` (DNS names; `127.0.0.1` as an IP address) and
    /// its key, written as `FILE.crt` / `FILE.key` next to the CA (outside `dir()`'s
    /// PEM set: in a `certs/` subdirectory).
    pub fn server(&self, file: &str, names: &[&str], validity: Validity) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("server params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        for n in names {
            params.subject_alt_names.push(match n.parse::<Ipv4Addr>() {
                Ok(ip) => SanType::IpAddress(IpAddr::V4(ip)),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            });
        }
        let (from, to) = match validity {
            Validity::Current => (days_from_now(-1), days_from_now(365)),
            Validity::Expired => (days_from_now(-730), days_from_now(-365)),
        };
        params.not_before = from;
        params.not_after = to;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed server certificate");
        let certs = self.dir.path().join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let (crt, k) = (
            certs.join(format!("{file}.crt")),
            certs.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write certificate");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (crt, k)
    }
}

/// Midnight UTC `days` from today.
fn days_from_now(days: i64) -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    now.replace_time(time::Time::MIDNIGHT)
}
