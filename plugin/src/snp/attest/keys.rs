//! The installation's SNP key hierarchy, in place of AMD's: an ARK
//! (self-signed root), an ASK (signed by the ARK) and a VCEK (signed by the
//! ASK) that signs every attestation report.
//!
//! As on AMD's Key Distribution Service (VCEK certificate specification,
//! 57230, chapter 3): the ARK and ASK are RSA-4096 keys whose certificates
//! are signed with RSASSA-PSS, SHA-384, MGF1 SHA-384, salt 48; the VCEK is an
//! ECDSA P-384 key. That is what the `sev` crate's `Chain::verify` checks
//! (`crypto_nossl`: RSA-PSS between certificates only) and what snpguest
//! expects. The subject names say cvmem: a verifier that pins AMD's ARK
//! rejects them, as it should.
//!
//! Generated once per installation in `$CVMEM_CACHE/snp-keys/` (default
//! `~/.cache/cvmem`, see scripts/lib/cache.bash): `ark.der`, `ask.der`,
//! `vcek.der` (the certificates) and `vcek.key` (the VCEK's 48-byte private
//! scalar). The ARK's and ASK's private keys are not kept: nothing signs
//! with them after the VCEK's certificate is made. The directory is built
//! under a temporary name and renamed into place, so concurrent first runs
//! agree on one hierarchy.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use p384::ecdsa::SigningKey;
use rand_core::{OsRng, RngCore};
use rsa::pss;
use rsa::signature::Keypair;
use sha2::{Digest, Sha384, Sha512};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{Decode, Encode};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// The RSA modulus of the ARK and ASK, as AMD's.
const RSA_BITS: usize = 4096;
/// How long the certificates are valid (UTCTime reaches 2049).
const VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);

const ARK_NAME: &str = "CN=cvmem ARK (not AMD),OU=cvmem SNP model,O=cvmem";
const ASK_NAME: &str = "CN=cvmem ASK (not AMD),OU=cvmem SNP model,O=cvmem";
const VCEK_NAME: &str = "CN=cvmem VCEK (not AMD),OU=cvmem SNP model,O=cvmem";

/// The key hierarchy: the certificates (DER) and the VCEK's private key.
#[derive(Clone)]
pub struct Keys {
    /// The ARK's certificate.
    pub ark: Vec<u8>,
    /// The ASK's certificate.
    pub ask: Vec<u8>,
    /// The VCEK's certificate.
    pub vcek: Vec<u8>,
    /// The VCEK, which signs reports.
    pub vcek_key: SigningKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    /// CHIP_ID for reports: SHA-512 of the VCEK's public key (SEC1), a
    /// 64-byte identifier of this installation's "chip" (on AMD's parts the
    /// VCEK is derived from the chip's secret and TCB; here the chip is
    /// named by its key).
    pub fn chip_id(&self) -> [u8; 64] {
        let point = self.vcek_key.verifying_key().to_encoded_point(false);
        let mut id = [0u8; 64];
        id.copy_from_slice(&Sha512::digest(point.as_bytes()));
        id
    }

    /// Generates a new hierarchy (two RSA-4096 keys: seconds).
    pub fn generate() -> Result<Keys, String> {
        let rsa_key = || {
            rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .map_err(|e| format!("RSA key generation: {e}"))
        };
        let ark_key = pss::SigningKey::<Sha384>::new(rsa_key()?);
        let ask_key = pss::SigningKey::<Sha384>::new(rsa_key()?);
        let vcek_key = SigningKey::random(&mut OsRng);
        let name = |n: &str| Name::from_str(n).map_err(|e| format!("name {n}: {e}"));
        let (ark_name, ask_name) = (name(ARK_NAME)?, name(ASK_NAME)?);
        let ark = certificate(
            Profile::Root,
            ark_name.clone(),
            spki(ark_key.verifying_key())?,
            &ark_key,
        )?;
        let ask = certificate(
            Profile::SubCA {
                issuer: ark_name,
                path_len_constraint: Some(0),
            },
            ask_name.clone(),
            spki(ask_key.verifying_key())?,
            &ark_key,
        )?;
        let vcek = certificate(
            Profile::Leaf {
                issuer: ask_name,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            name(VCEK_NAME)?,
            spki(*vcek_key.verifying_key())?,
            &ask_key,
        )?;
        Ok(Keys {
            ark,
            ask,
            vcek,
            vcek_key,
        })
    }

    /// Writes the hierarchy into the directory `dir` (new).
    fn save(&self, dir: &Path) -> Result<(), String> {
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
        };
        write("ark.der", &self.ark)?;
        write("ask.der", &self.ask)?;
        write("vcek.der", &self.vcek)?;
        write("vcek.key", &self.vcek_key.to_bytes())
    }

    /// Reads the hierarchy `save` wrote; the VCEK's key must be the one its
    /// certificate certifies.
    pub fn load(dir: &Path) -> Result<Keys, String> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
        };
        let scalar = read("vcek.key")?;
        let vcek_key = SigningKey::from_slice(&scalar)
            .map_err(|e| format!("{}: not a P-384 key: {e}", dir.join("vcek.key").display()))?;
        let keys = Keys {
            ark: read("ark.der")?,
            ask: read("ask.der")?,
            vcek: read("vcek.der")?,
            vcek_key,
        };
        let cert = x509_cert::Certificate::from_der(&keys.vcek)
            .map_err(|e| format!("{}: {e}", dir.join("vcek.der").display()))?;
        let certified = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if certified
            != keys
                .vcek_key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
        {
            return Err(format!(
                "{}: vcek.key is not the key vcek.der certifies",
                dir.display()
            ));
        }
        Ok(keys)
    }

    /// The hierarchy in `dir`, generated and saved there first if it does
    /// not exist. A concurrent first use that wins the rename is taken.
    pub fn load_or_create(dir: &Path) -> Result<Keys, String> {
        if dir.exists() {
            return Keys::load(dir);
        }
        let parent = dir
            .parent()
            .ok_or_else(|| format!("{}: no parent directory", dir.display()))?;
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let tmp = parent.join(format!(
            ".snp-keys.tmp-{}-{:x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        // Only the user reads the VCEK's private key.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let made = Keys::generate().and_then(|k| k.save(&tmp).map(|()| k));
        let keys = match made {
            Ok(k) => k,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        // rename(2) of a directory onto an existing non-empty one fails:
        // another process made the hierarchy first, and that one counts.
        if std::fs::rename(&tmp, dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Keys::load(dir);
        }
        Ok(keys)
    }
}

/// Where the hierarchy lives: `$CVMEM_CACHE/snp-keys`, with CVMEM_CACHE's
/// default as in scripts/lib/cache.bash.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let cache = env("CVMEM_CACHE").map(PathBuf::from).or_else(|| {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("cvmem"))
    })?;
    Some(cache.join("snp-keys"))
}

fn spki<K: x509_cert::spki::EncodePublicKey>(key: K) -> Result<SubjectPublicKeyInfoOwned, String> {
    SubjectPublicKeyInfoOwned::from_key(key).map_err(|e| format!("public key: {e}"))
}

/// A certificate for `subject` signed by `signer` with RSA-PSS.
fn certificate(
    profile: Profile,
    subject: Name,
    key: SubjectPublicKeyInfoOwned,
    signer: &pss::SigningKey<Sha384>,
) -> Result<Vec<u8>, String> {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| format!("serial: {e}"))?;
    let validity = Validity::from_now(VALIDITY).map_err(|e| format!("validity: {e}"))?;
    let builder = CertificateBuilder::new(profile, serial, validity, subject, key, signer)
        .map_err(|e| format!("certificate: {e}"))?;
    let cert = builder
        .build_with_rng::<pss::Signature>(&mut OsRng)
        .map_err(|e| format!("certificate signature: {e}"))?;
    cert.to_der().map_err(|e| format!("certificate DER: {e}"))
}

/// One hierarchy for a test process (RSA-4096 generation takes seconds).
#[cfg(test)]
pub fn test_keys() -> Keys {
    use std::sync::OnceLock;
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::generate().expect("keys")).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::attest::verify::{cert_table, chain_of, guid};
    use sev::certs::snp::Verifiable;

    #[test]
    fn the_chain_verifies_with_the_sev_crate_and_names_cvmem() {
        let k = test_keys();
        let table = cert_table(&[
            (guid::ARK, &k.ark),
            (guid::ASK, &k.ask),
            (guid::VCEK, &k.vcek),
        ]);
        let chain = chain_of(&table).unwrap();
        (&chain).verify().expect("ARK -> ASK -> VCEK");
        // The ASK does not sign the ARK: the verifier notices a swap.
        let swapped = cert_table(&[
            (guid::ARK, &k.ask),
            (guid::ASK, &k.ark),
            (guid::VCEK, &k.vcek),
        ]);
        assert!((&chain_of(&swapped).unwrap()).verify().is_err());
        let ark = x509_cert::Certificate::from_der(&k.ark).unwrap();
        let subject = ark.tbs_certificate.subject.to_string();
        assert!(subject.contains("cvmem ARK (not AMD)"), "{subject}");
        assert_eq!(ark.tbs_certificate.issuer, ark.tbs_certificate.subject);
    }

    #[test]
    fn made_once_kept_and_reloaded() {
        let base = std::env::temp_dir().join(format!("cvmem-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("snp-keys");
        let a = Keys::load_or_create(&dir).unwrap();
        let b = Keys::load_or_create(&dir).unwrap();
        assert_eq!(a.vcek, b.vcek);
        assert_eq!(a.chip_id(), b.chip_id());
        assert_eq!(a.vcek_key.to_bytes(), b.vcek_key.to_bytes());
        // A key that is not the certified one is refused.
        std::fs::write(
            dir.join("vcek.key"),
            SigningKey::random(&mut OsRng).to_bytes(),
        )
        .unwrap();
        let err = Keys::load(&dir).unwrap_err();
        assert!(err.contains("not the key vcek.der certifies"), "{err}");
        // No temporary directory is left behind.
        let left: Vec<_> = std::fs::read_dir(&base).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
