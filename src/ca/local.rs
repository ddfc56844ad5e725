//! The local CA on disk: `ca.pem` and `ca-key.pem` in `--ca-dir`, created when absent (the key
//! mode 0600, the folder 0700), refused when unsafe or unusable, and [`LocalCa`], which mints
//! the leaves that clients trusting `ca.pem` accept.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::RootCertStore;
use time::OffsetDateTime;

use super::{ring_provider, CaError, LeafIssuer};

/// File name of the CA certificate inside `--ca-dir` (the contract in design.md).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside `--ca-dir` (the contract in design.md).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// The CA's common name: a user who finds it in a trust store must see at once what put it there.
const CA_COMMON_NAME: &str = "strictproxy local CA";
/// The organisation on the CA and on every leaf, so an intercepted certificate says who minted it.
const ORGANIZATION: &str = "strictproxy";

/// How far `notBefore` is set in the past, on the CA and on leaves. Clients whose clock runs
/// slow (VMs restored from a snapshot, phones before NTP sync) reject a certificate that is "not
/// yet valid"; mitmproxy backdates its leaves by two days for the same reason.
const BACKDATE: time::Duration = time::Duration::days(2);

/// Total leaf validity, `notAfter − notBefore`, backdate included. Apple's platforms reject
/// server certificates valid for longer than their policy allows (825 days for user-added
/// roots, 398 for public ones, shrinking to 200 and below from 2026), so we stay well under all
/// of them. One second is taken off because RFC 5280 §4.1.2.5 makes both ends inclusive, and the
/// CA/Browser Forum counts the period that way.
const LEAF_VALIDITY: time::Duration = time::Duration::seconds(180 * 86_400 - 1);

/// CA validity. Trust stores do not limit the lifetime of a user-installed root, and every
/// regeneration forces the user to re-trust, so it is long (mitmproxy uses ten years too).
const CA_VALIDITY: time::Duration = time::Duration::days(10 * 365);

/// RFC 5280 Appendix A `ub-common-name`: a CN longer than 64 characters is invalid, and some
/// parsers reject the whole certificate, so long names go in the SAN only.
const MAX_COMMON_NAME_LEN: usize = 64;

/// A name used only to check, at load time, that a leaf we sign verifies against the CA on disk.
/// `.invalid` is reserved and never resolves (RFC 6761 §6.4).
const SELF_TEST_NAME: &str = "strictproxy-self-test.invalid";

/// The subject-alternative-name entry a leaf for `name` carries: an iPAddress SAN for an IP
/// literal, a dNSName SAN otherwise. Browsers match an IP only against iPAddress entries
/// (RFC 6125 §6.2.1; Chrome and Firefox ignore an IP written as a DNS SAN), so the type matters.
fn leaf_san(name: &str) -> Result<SanType, CaError> {
    let invalid = |reason: &str| CaError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // Validate with the rules rustls-webpki applies when it verifies a server name, so we never
    // mint what a client would refuse to match.
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => {}
        Ok(_) => return Err(invalid("not a DNS name")),
        Err(e) => return Err(invalid(&e.to_string())),
    }
    // A CONNECT to "*.example.com" is not a real host; minting a wildcard for it would hand the
    // client a certificate for names it never asked for.
    if name.contains('*') {
        return Err(invalid("wildcards are never minted"));
    }
    let ia5 = name
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| invalid(&e.to_string()))?;
    Ok(SanType::DnsName(ia5))
}

/// A random positive 128-bit serial. RFC 5280 §4.1.2.2 requires serials unique per issuer, and
/// Firefox refuses a certificate whose issuer and serial it has seen on a different certificate
/// (SEC_ERROR_REUSED_ISSUER_AND_SERIAL). rcgen's default serial is a hash of the public key,
/// which would repeat across all our leaves since they share one key; the CA/Browser Forum
/// asks for at least 64 random bits.
fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    // Positive, and never a leading zero byte, so the DER INTEGER is always 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A random tag that makes each installation's CA subject unique. Two CAs with the same subject
/// but different keys in one trust store (a machine that generated the CA twice) send some
/// verifiers, NSS among them, down the wrong issuer when they build a path by name.
fn install_tag(provider: &CryptoProvider) -> Result<String, CaError> {
    let mut bytes = [0u8; 4];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The current time truncated to whole seconds, the resolution of X.509 times, so that the
/// validity arithmetic is exact once encoded.
fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The local CA: its certificate as on disk, its key, and the one leaf key pair shared by every
/// leaf this process mints.
pub struct LocalCa {
    cert_path: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The CA rebuilt from `ca.pem` and its key, used only as the issuer of leaves: same subject
    /// and the subject key identifier read from the file, so each leaf's issuer name and
    /// Authority Key Identifier match the certificate clients trust.
    issuer: rcgen::Certificate,
    issuer_key: KeyPair,
    ca_not_after: OffsetDateTime,
    /// One key pair for all leaves, made once per process and never written to disk. Minting
    /// then costs one CA signature instead of a key generation per host; it is separate from the
    /// CA key so that the key used in every handshake can never sign a certificate.
    leaf_key: KeyPair,
    leaf_signing_key: Arc<dyn SigningKey>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `dir/ca.pem` and `dir/ca-key.pem`, creating the directory and both
    /// files when neither exists. Refuses a key readable by group or others, a lone file, an
    /// expired or non-CA certificate, and a key that does not sign for the certificate.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let exists = |path: &Path| {
            path.try_exists().map_err(|source| CaError::Io {
                action: "check",
                path: path.to_owned(),
                source,
            })
        };
        match (exists(&cert_path)?, exists(&key_path)?) {
            (false, false) => create(dir, &cert_path, &key_path)?,
            (true, true) => {}
            (true, false) => {
                return Err(CaError::OnlyOneFile {
                    present: cert_path,
                    missing: key_path,
                })
            }
            (false, true) => {
                return Err(CaError::OnlyOneFile {
                    present: key_path,
                    missing: cert_path,
                })
            }
        }
        check_key_permissions(&key_path)?;
        load(cert_path, &key_path)
    }

    /// The CA certificate in PEM, as `strictproxy ca export` and the admin `/ca.pem` serve it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER, exactly as in `ca.pem`.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Where the CA certificate lives, to tell the user what to trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// The leaf certificate parameters for `name`, valid from `now − BACKDATE`.
    fn leaf_params(&self, name: &str, now: OffsetDateTime) -> Result<CertificateParams, CaError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![leaf_san(name)?];

        let mut dn = DistinguishedName::new();
        // Browsers read only the SAN (Chrome since 58, RFC 6125 §6.4.4), but older clients and
        // tools still show or match the CN, so it repeats the name when it fits.
        if name.len() <= MAX_COMMON_NAME_LEN {
            dn.push(DnType::CommonName, name);
        }
        dn.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name = dn;

        params.serial_number = Some(random_serial(&self.provider)?);
        params.not_before = now - BACKDATE;
        // A leaf outliving its issuer is refused by some verifiers (and useless to all).
        params.not_after = (params.not_before + LEAF_VALIDITY).min(self.ca_not_after);

        // basicConstraints cA=FALSE (rcgen writes it critical, with a subject key identifier):
        // RFC 5280 §4.2.1.9; without it macOS and some Java versions treat the leaf warily.
        params.is_ca = IsCa::ExplicitNoCa;
        // An ECDSA (or Ed25519) leaf only ever signs the handshake: digitalSignature, RFC 5280
        // §4.2.1.3; keyEncipherment would be wrong for a non-RSA key and strict clients check.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // EKU serverAuth (RFC 5280 §4.2.1.12): required by Apple platforms and by Chrome for any
        // server certificate, even under a user-installed root.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Authority Key Identifier = the CA's SKI (RFC 5280 §4.2.1.1), which rcgen takes from the
        // issuer's key identifier, read from ca.pem on load; Windows and macOS use it to find
        // the issuer.
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// Mints a leaf for `name` valid from `now − BACKDATE`.
    fn mint(&self, name: &str, now: OffsetDateTime) -> Result<Arc<CertifiedKey>, CaError> {
        let params = self.leaf_params(name, now)?;
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer, &self.issuer_key)
            .map_err(|source| CaError::Mint {
                name: name.to_owned(),
                source,
            })?;
        // The chain sent is leaf + CA. Sending the root is harmless (RFC 8446 §4.4.2 allows it)
        // and lets clients that build paths only from what the server sent find the issuer.
        let chain = vec![leaf.der().clone(), self.cert_der.clone()];
        Ok(Arc::new(CertifiedKey::new(
            chain,
            Arc::clone(&self.leaf_signing_key),
        )))
    }

    /// Proves that what is on disk works: a leaf signed with the key must verify against the
    /// certificate, as a client trusting only `ca.pem` would check it. Catches a key that does
    /// not belong to the certificate and a subject rcgen could not rebuild byte for byte.
    fn self_test(&self, key_path: &Path) -> Result<(), CaError> {
        let mismatch = |reason: String| CaError::KeyMismatch {
            cert: self.cert_path.clone(),
            key: key_path.to_owned(),
            reason,
        };
        let leaf = self.mint(SELF_TEST_NAME, now_seconds())?;
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| mismatch(e.to_string()))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| mismatch(e.to_string()))?;
        let server_name =
            ServerName::try_from(SELF_TEST_NAME).map_err(|e| mismatch(e.to_string()))?;
        let (end_entity, intermediates) = leaf
            .cert
            .split_first()
            .ok_or_else(|| mismatch("empty chain".to_owned()))?;
        verifier
            .verify_server_cert(
                end_entity,
                intermediates,
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(())
    }
}

impl LeafIssuer for LocalCa {
    fn issue(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        self.mint(name, now_seconds())
    }
}

/// Generates a new CA into `dir`: a P-256 key (mode 0600) and a self-signed certificate.
fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), CaError> {
    create_dir(dir)?;
    let provider = ring_provider();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(
        DnType::OrganizationalUnitName,
        format!("installation {}", install_tag(&provider)?),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial(&provider)?);
    let now = now_seconds();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    // pathLenConstraint 0: this CA signs leaves only, never another CA (RFC 5280 §4.2.1.9).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // keyCertSign and cRLSign, critical: what RFC 5280 §4.2.1.3 and the CA/Browser Forum
    // require of a root; macOS refuses to use a root without keyCertSign to verify a leaf.
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(CaError::Generate)?;

    // The key first, so a crash in between leaves a lone key, which load_or_create reports
    // instead of silently generating a CA the user has not trusted.
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        cert = %cert_path.display(),
        "generated a new local CA; clients must trust it (strictproxy ca export)"
    );
    Ok(())
}

/// Creates the CA directory; on Unix only its owner may enter it.
fn create_dir(dir: &Path) -> Result<(), CaError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| CaError::Io {
        action: "create the directory",
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` through a temporary file renamed into place, so a crash never
/// leaves a half-written PEM. The temporary file is created with `mode` from the start (Unix),
/// so the key is never readable by others, not even for an instant.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| CaError::Io {
            action,
            path,
            source,
        }
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A stale temporary file from an earlier crash may be there with other permissions.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp)(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("create", path))
}

/// Refuses a CA key that group or others can access: whoever reads it can impersonate every
/// site to every client that trusts the CA (the same rule ssh applies to private keys).
#[cfg(unix)]
fn check_key_permissions(key_path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(key_path).map_err(|source| CaError::Io {
        action: "read",
        path: key_path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: key_path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Windows has no mode bits; the key's ACL is the user's to set.
#[cfg(not(unix))]
fn check_key_permissions(_key_path: &Path) -> Result<(), CaError> {
    Ok(())
}

/// Reads and checks both files and makes the process's leaf key pair.
fn load(cert_path: PathBuf, key_path: &Path) -> Result<LocalCa, CaError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| CaError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })
    };
    let bad_cert = |reason: String| CaError::BadCert {
        path: cert_path.clone(),
        reason,
    };
    let bad_key = |reason: String| CaError::BadKey {
        path: key_path.to_owned(),
        reason,
    };

    let cert_text = read(&cert_path)?;
    let cert_der = CertificateDer::pem_slice_iter(cert_text.as_bytes())
        .next()
        .ok_or_else(|| bad_cert("no CERTIFICATE block in the file".to_owned()))?
        .map_err(|e| bad_cert(format!("not a valid PEM file: {e}")))?;
    let params = CertificateParams::from_ca_cert_der(&cert_der)
        .map_err(|e| bad_cert(format!("not a parsable X.509 certificate: {e}")))?;
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        return Err(bad_cert(
            "it is not a CA certificate (no basicConstraints cA=TRUE); browsers reject leaves \
             it signs"
                .to_owned(),
        ));
    }
    let ca_not_after = params.not_after;
    let now = now_seconds();
    if ca_not_after <= now {
        return Err(CaError::Expired {
            path: cert_path,
            key: key_path.to_owned(),
            not_after: ca_not_after,
        });
    }
    if ca_not_after - now < time::Duration::days(30) {
        tracing::warn!(
            cert = %cert_path.display(),
            not_after = %ca_not_after,
            "the local CA expires within 30 days; delete ca.pem and ca-key.pem to make a new one"
        );
    }

    let key_text = read(key_path)?;
    let issuer_key = KeyPair::from_pem(&key_text).map_err(|e| {
        bad_key(format!(
            "not a PKCS#8 private key rcgen can use ({e}); convert one with \
             `openssl pkcs8 -topk8 -nocrypt`"
        ))
    })?;
    let issuer = params
        .self_signed(&issuer_key)
        .map_err(|e| bad_key(format!("cannot sign with it: {e}")))?;

    let provider = ring_provider();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
    let leaf_signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))?;

    let ca = LocalCa {
        cert_pem: pem_encode(&cert_der),
        cert_path,
        cert_der,
        issuer,
        issuer_key,
        ca_not_after,
        leaf_key,
        leaf_signing_key,
        provider,
    };
    ca.self_test(key_path)?;
    Ok(ca)
}

/// PEM of one certificate (RFC 7468 §2: 64-character base64 lines), so the export is the
/// certificate alone even if the file around it holds comments or more blocks.
fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};

    use crate::ca::test_ca as new_ca;

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        X509Certificate::from_der(der).unwrap().1
    }

    fn file_mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The SKI of the CA as written in ca.pem on disk, not as rebuilt in memory.
    fn ski_on_disk(ca: &LocalCa) -> Vec<u8> {
        let text = fs::read_to_string(ca.cert_path()).unwrap();
        let der = CertificateDer::pem_slice_iter(text.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let cert = parse(&der);
        let ski = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ki) => Some(ki.0.to_vec()),
                _ => None,
            });
        ski.unwrap()
    }
    #[test]
    fn leaf_san_table() {
        let rows: &[(&str, Option<SanType>)] = &[
            // IP literals get an iPAddress SAN (RFC 6125 §6.2.1; browsers ignore DNS-typed IPs).
            (
                "127.0.0.1",
                Some(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            ),
            (
                "::1",
                Some(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            ),
            // Names get a dNSName SAN.
            (
                "secure.test",
                Some(SanType::DnsName(
                    "secure.test".to_owned().try_into().unwrap(),
                )),
            ),
            // Underscores occur in real hostnames and rustls-webpki matches them.
            (
                "a_b.example.com",
                Some(SanType::DnsName(
                    "a_b.example.com".to_owned().try_into().unwrap(),
                )),
            ),
            // Never mint a wildcard for a bogus CONNECT target.
            ("*.example.com", None),
            // Not a host name at all.
            ("", None),
            ("bad name", None),
            ("ex\u{e4}mple.com", None),
            // An IPv6 literal with brackets is not a name: leaf_name must strip them first.
            ("[::1]", None),
        ];
        for (name, want) in rows {
            assert_eq!(leaf_san(name).ok(), *want, "name={name:?}");
        }
    }

    #[test]
    fn creates_key_0600_and_reload_gives_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("nested").join("certs");
        let first = LocalCa::load_or_create(&ca_dir).unwrap();
        assert_eq!(file_mode(&ca_dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(file_mode(&ca_dir), 0o700);
        assert_eq!(first.cert_path(), ca_dir.join(CA_CERT_FILE));
        assert!(!ca_dir.join("ca-key.pem.tmp").exists());

        let second = LocalCa::load_or_create(&ca_dir).unwrap();
        assert_eq!(first.cert_der(), second.cert_der());
        assert_eq!(first.cert_pem(), second.cert_pem());
        assert_eq!(
            fs::read_to_string(first.cert_path()).unwrap(),
            first.cert_pem()
        );
    }

    #[test]
    fn ca_certificate_is_a_p256_ca_naming_strictproxy() {
        let (_dir, ca) = new_ca();
        let cert = parse(ca.cert_der());
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert!(cn.contains("strictproxy"), "{cn}");
        assert_eq!(cert.subject(), cert.issuer());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        // id-ecPublicKey with the prime256v1 curve.
        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
        assert!(cert.validity().is_valid());
    }

    #[test]
    fn refuses_a_key_readable_by_others_and_names_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
            let err = LocalCa::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, CaError::KeyPermissions { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", key.display())),
                "{msg}"
            );
        }
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
    }

    #[test]
    fn a_lone_file_is_an_error_naming_both() {
        for (keep, gone) in [(CA_CERT_FILE, CA_KEY_FILE), (CA_KEY_FILE, CA_CERT_FILE)] {
            let dir = tempfile::tempdir().unwrap();
            LocalCa::load_or_create(dir.path()).unwrap();
            fs::remove_file(dir.path().join(gone)).unwrap();
            let err = LocalCa::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, CaError::OnlyOneFile { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(keep) && msg.contains(gone), "{msg}");
            // Nothing was regenerated over the surviving file.
            assert!(!dir.path().join(gone).exists());
        }
    }

    #[test]
    fn unusable_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        let cert = dir.path().join(CA_CERT_FILE);
        let good_cert = fs::read_to_string(&cert).unwrap();

        fs::write(&cert, "not a certificate\n").unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::BadCert { .. }), "{err}");
        assert!(err.to_string().contains(&cert.display().to_string()));

        fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::BadCert { .. }), "{err}");

        fs::write(&cert, &good_cert).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        fs::write(&key, "garbage").unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains(&key.display().to_string()));
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let (dir_a, _) = new_ca();
        let (dir_b, _) = new_ca();
        let key_a = dir_a.path().join("certs").join(CA_KEY_FILE);
        let key_b = dir_b.path().join("certs").join(CA_KEY_FILE);
        fs::copy(&key_a, &key_b).unwrap();
        let err = LocalCa::load_or_create(&dir_b.path().join("certs")).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn a_non_ca_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["not-a-ca.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write_new(
            &dir.path().join(CA_KEY_FILE),
            key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), cert.pem()).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
    }

    #[test]
    fn an_expired_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        write_new(
            &dir.path().join(CA_KEY_FILE),
            key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), cert.pem()).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::Expired { .. }), "{err}");
    }

    #[test]
    fn leaf_san_type_follows_the_name() {
        let (_dir, ca) = new_ca();
        let rows: &[(&str, Option<&str>, Option<IpAddr>)] = &[
            // A DNS name: exactly one dNSName SAN.
            ("secure.test", Some("secure.test"), None),
            // IP literals: exactly one iPAddress SAN (RFC 5280 §4.2.1.6 octet form).
            ("127.0.0.1", None, Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            ("::1", None, Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
        ];
        for (name, dns, ip) in rows {
            let leaf = ca.issue(name).unwrap();
            let cert = parse(&leaf.cert[0]);
            let san = cert.subject_alternative_name().unwrap().unwrap();
            assert!(
                !san.critical,
                "the subject is not empty, so the SAN is not critical"
            );
            assert_eq!(san.value.general_names.len(), 1, "{name}");
            match (&san.value.general_names[0], dns, ip) {
                (GeneralName::DNSName(got), Some(want), None) => assert_eq!(got, want),
                (GeneralName::IPAddress(got), None, Some(IpAddr::V4(want))) => {
                    assert_eq!(*got, want.octets())
                }
                (GeneralName::IPAddress(got), None, Some(IpAddr::V6(want))) => {
                    assert_eq!(*got, want.octets())
                }
                (other, _, _) => panic!("{name}: unexpected SAN {other:?}"),
            }
        }
    }

    #[test]
    fn leaf_extensions_validity_and_chain() {
        let (_dir, ca) = new_ca();
        let before = OffsetDateTime::now_utc();
        let leaf = ca.issue("secure.test").unwrap();
        assert_eq!(leaf.cert.len(), 2, "leaf + CA");
        assert_eq!(leaf.cert[1].as_ref(), ca.cert_der());
        let cert = parse(&leaf.cert[0]);

        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);

        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.value.digital_signature() && !ku.value.key_cert_sign());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);

        let aki = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski_on_disk(&ca).as_slice());
        assert_eq!(cert.issuer(), parse(ca.cert_der()).subject());
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "secure.test"
        );

        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        assert!(not_after - not_before <= time::Duration::days(180));
        assert!(not_after - not_before > time::Duration::days(179));
        // Backdated, but by a small amount.
        assert!(not_before < before - time::Duration::hours(1));
        assert!(not_before > before - time::Duration::days(3));
    }

    #[test]
    fn leaves_of_a_reloaded_ca_carry_the_ski_on_disk() {
        let (dir, first) = new_ca();
        let ski = ski_on_disk(&first);
        drop(first);
        let ca = LocalCa::load_or_create(&dir.path().join("certs")).unwrap();
        let leaf = ca.issue("reloaded.test").unwrap();
        let cert = parse(&leaf.cert[0]);
        let aki = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski.as_slice());
    }

    #[test]
    fn leaves_share_one_key_apart_from_the_ca_and_have_distinct_serials() {
        let (_dir, ca) = new_ca();
        let a = ca.issue("a.test").unwrap();
        let b = ca.issue("b.test").unwrap();
        let (ca_a, ca_b) = (parse(&a.cert[0]), parse(&b.cert[0]));
        let key = |c: &X509Certificate<'_>| c.public_key().raw.to_vec();
        assert_eq!(key(&ca_a), key(&ca_b));
        assert_ne!(key(&ca_a), key(&parse(ca.cert_der())));
        // Firefox rejects a reused issuer+serial (SEC_ERROR_REUSED_ISSUER_AND_SERIAL).
        assert_ne!(ca_a.raw_serial(), ca_b.raw_serial());
        let again = parse(&ca.issue("a.test").unwrap().cert[0])
            .raw_serial()
            .to_vec();
        assert_ne!(ca_a.raw_serial(), again.as_slice());
        // The rustls signing key matches the certificate's public key.
        a.keys_match().unwrap();
    }

    #[test]
    fn long_names_leave_the_cn_out() {
        let (_dir, ca) = new_ca();
        let long = format!("{}.example.com", "a".repeat(60));
        let leaf = ca.issue(&long).unwrap();
        let cert = parse(&leaf.cert[0]);
        assert!(cert.subject().iter_common_name().next().is_none());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName(&long)]);
    }

    #[test]
    fn invalid_names_are_errors() {
        let (_dir, ca) = new_ca();
        for name in ["", "*.example.com", "bad name"] {
            let err = ca.issue(name).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidName { .. }),
                "{name:?}: {err}"
            );
        }
    }
}
