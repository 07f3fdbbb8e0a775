//! WebTransport's certificates: made by the server, short-lived, rotated, pinned by hash.
//!
//! A page on `http://127.0.0.1` is a secure context, so it may open WebTransport to a server
//! whose certificate no authority signed, by naming the certificate's SHA-256 hash
//! (`serverCertificateHashes`). Browsers accept that only for an ECDSA P-256 X.509v3
//! certificate valid for at most 14 days (Chromium also refuses one without extensions, even
//! when the hash matches; these carry the subject alternative names). So the server makes its
//! own and replaces them:
//!
//! - each is valid for the configured lifetime `L`, from a minute (at most `L/10`) before it
//!   was made;
//! - at `L/2` a successor is made and `GET /api/webtransport` names both hashes, so a page that
//!   fetched them just before the switch still connects;
//! - at `3L/4` the server presents the successor, which becomes current, and the old hash goes.
//!
//! [`Rotation`] is the schedule as plain logic over instants; [`Certificates`] holds the
//! certificates and makes new ones when the schedule says.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use wtransport::Identity;
use wtransport::tls::self_signed::time::OffsetDateTime;

/// How far before its making a certificate's validity starts, for clocks a little behind: a
/// minute, or a tenth of a short lifetime.
fn backdate(lifetime: Duration) -> Duration {
    Duration::from_secs(60).min(lifetime / 10)
}

/// One certificate and what the page needs of it.
pub struct Issued {
    identity: Identity,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub hash: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Issued {
    /// A new self-signed ECDSA P-256 certificate for `names`, valid `lifetime` from a minute ago.
    pub fn new(names: &[String], now: SystemTime, lifetime: Duration) -> anyhow::Result<Self> {
        let not_before = now - backdate(lifetime);
        let not_after = not_before + lifetime;
        let identity = Identity::self_signed_builder()
            .subject_alt_names(names)
            .validity_period(
                OffsetDateTime::from(not_before),
                OffsetDateTime::from(not_after),
            )
            .build()
            .context("making the WebTransport certificate")?;
        let hash = hex(identity.certificate_chain().as_slice()[0].hash().as_ref());
        Ok(Self {
            identity,
            hash,
            not_before,
            not_after,
        })
    }

    pub fn identity(&self) -> Identity {
        self.identity.clone_identity()
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        self.identity.certificate_chain().as_slice()[0].der()
    }
}

/// What the schedule says to do next, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Make the successor and publish its hash beside the current one.
    Prepare,
    /// Present the successor; it becomes current.
    Switch,
}

/// When the current certificate (made at `not_before`, valid `lifetime`) gets a successor and
/// when the successor takes over.
pub fn schedule(not_before: SystemTime, lifetime: Duration, prepared: bool) -> (Step, SystemTime) {
    if prepared {
        (Step::Switch, not_before + lifetime * 3 / 4)
    } else {
        (Step::Prepare, not_before + lifetime / 2)
    }
}

/// The current certificate and its successor once made.
struct Held {
    current: Issued,
    next: Option<Issued>,
}

/// The server's WebTransport certificates; shared by the endpoint's rotation task and
/// `GET /api/webtransport`.
pub struct Certificates {
    names: Vec<String>,
    lifetime: Duration,
    held: Mutex<Held>,
}

impl Certificates {
    pub fn new(names: Vec<String>, lifetime: Duration) -> anyhow::Result<Arc<Self>> {
        let current = Issued::new(&names, SystemTime::now(), lifetime)?;
        Ok(Arc::new(Self {
            names,
            lifetime,
            held: Mutex::new(Held {
                current,
                next: None,
            }),
        }))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The hashes a page may pin: the current certificate's, then its successor's once made.
    pub fn hashes(&self) -> Vec<String> {
        let held = self.held();
        std::iter::once(&held.current)
            .chain(&held.next)
            .map(|issued| issued.hash.clone())
            .collect()
    }

    /// The identity the server presents now.
    pub fn identity(&self) -> Identity {
        self.held().current.identity()
    }

    /// The current certificate, DER-encoded.
    pub fn current_der(&self) -> Vec<u8> {
        self.held().current.der().to_vec()
    }

    /// The next step of the schedule and when it is due.
    pub fn next_step(&self) -> (Step, SystemTime) {
        let held = self.held();
        schedule(held.current.not_before, self.lifetime, held.next.is_some())
    }

    /// Carries out `step`; after [`Step::Switch`], returns the identity to present.
    pub fn take(&self, step: Step) -> anyhow::Result<Option<Identity>> {
        match step {
            Step::Prepare => {
                let next = Issued::new(&self.names, SystemTime::now(), self.lifetime)?;
                self.held().next = Some(next);
                Ok(None)
            }
            Step::Switch => {
                let mut held = self.held();
                let Some(next) = held.next.take() else {
                    return Ok(None);
                };
                held.current = next;
                Ok(Some(held.current.identity()))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        write!(out, "{byte:02x}").expect("writing to a String cannot fail");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn certificates_are_what_browsers_pin() {
        let lifetime = Duration::from_secs(14 * 86_400);
        let now = SystemTime::now();
        let issued = Issued::new(&names(), now, lifetime).unwrap();
        let (_, cert) = X509Certificate::from_der(issued.der()).unwrap();
        // X.509v3, with extensions: Chromium refuses a pinned certificate without them.
        assert_eq!(cert.version(), X509Version::V3);
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .expect("the names are an extension");
        assert_eq!(sans.value.general_names.len(), 2);
        // ECDSA over P-256.
        let key = cert.public_key();
        assert_eq!(
            key.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = key.algorithm.parameters.as_ref().unwrap().as_oid().unwrap();
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        // At most 14 days, and already valid.
        let validity = cert.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!(days <= 14, "{days} days");
        assert!(validity.is_valid());
        // The pinned hash is the SHA-256 of this DER.
        assert_eq!(issued.hash.len(), 64);
    }

    #[test]
    fn a_successor_is_published_at_half_life_and_presented_at_three_quarters() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let life = Duration::from_secs(400);
        assert_eq!(
            schedule(start, life, false),
            (Step::Prepare, start + Duration::from_secs(200))
        );
        assert_eq!(
            schedule(start, life, true),
            (Step::Switch, start + Duration::from_secs(300))
        );
    }

    #[test]
    fn both_hashes_are_named_between_prepare_and_switch() {
        let certificates = Certificates::new(names(), Duration::from_secs(3600)).unwrap();
        let first = certificates.hashes();
        assert_eq!(first.len(), 1);
        assert!(certificates.take(Step::Prepare).unwrap().is_none());
        let both = certificates.hashes();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], first[0]);
        assert_ne!(both[1], first[0]);
        let presented = certificates.take(Step::Switch).unwrap().unwrap();
        assert_eq!(certificates.hashes(), vec![both[1].clone()]);
        assert_eq!(
            hex(presented.certificate_chain().as_slice()[0].hash().as_ref()),
            both[1]
        );
    }
}
