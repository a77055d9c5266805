//! The decision, pure: given the Secret's contents, the wanted names and the time, keep what
//! is stored, renew the serving certificate, rotate the CA, or generate everything — and
//! produce the new Secret contents. No I/O and no clock: the caller passes `now`.
//!
//! A CA rotation never breaks a call from the API server: the new CA joins the bundle in
//! front of the old one, and the serving certificate signed by the old CA stays in use (if it
//! still works) until the new CA has been in the caBundle for [`CA_PROPAGATION`]. The old CA
//! leaves the bundle when it expires, which is after every certificate it signed.

use std::time::{Duration, SystemTime};

use super::inspect::{self, Certificate};
use super::issue::{self, IssueError, RENEW_DIVISOR};
use super::{CertSettings, Material};

/// How long a new CA sits in the caBundle before a serving certificate it signed replaces one
/// that still works: API servers pick up a webhook configuration change within seconds; an
/// hour also covers a caBundle patch that failed once and was retried.
pub const CA_PROPAGATION: Duration = Duration::from_secs(3600);

/// What is wrong with a stored certificate, i.e. why it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Unreadable,
    KeyMismatch,
    NotACa,
    NotYetValid,
    Expired,
    RenewalDue,
    WrongNames,
    ForeignIssuer,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::Missing => "missing",
            Problem::Unreadable => "unreadable",
            Problem::KeyMismatch => "its private key does not match",
            Problem::NotACa => "not a CA",
            Problem::NotYetValid => "not valid yet",
            Problem::Expired => "expired",
            Problem::RenewalDue => "less than a third of its lifetime left",
            Problem::WrongNames => "its DNS names are not the Service's",
            Problem::ForeignIssuer => "not signed by the stored CA",
        })
    }
}

/// One step towards a Secret that needs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// No usable CA: a new CA and a new serving certificate.
    GenerateAll(Problem),
    /// The CA has less than a third of its life left: a new CA goes in front of the old one.
    /// The serving certificate is reissued only if it is unusable (`Some`).
    RotateCa { serving: Option<Problem> },
    /// The CA is fine; the serving certificate is reissued by it.
    IssueServing(Problem),
    /// Only expired old CAs leave the bundle.
    PruneBundle,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::GenerateAll(problem) => {
                write!(f, "new CA and serving certificate (the CA is {problem})")
            }
            Change::RotateCa { serving: None } => {
                f.write_str("CA rotation (less than a third of its lifetime left)")
            }
            Change::RotateCa {
                serving: Some(problem),
            } => write!(
                f,
                "CA rotation and a new serving certificate (the old one is {problem})"
            ),
            Change::IssueServing(problem) => {
                write!(f, "new serving certificate (the old one is {problem})")
            }
            Change::PruneBundle => f.write_str("expired CA removed from the bundle"),
        }
    }
}

/// What to do with the stored contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do until `next_check`.
    Keep {
        next_check: SystemTime,
    },
    Change(Change),
}

/// The stored CAs that can be used: the current one (first in `ca.crt`, with its key) and
/// the older ones still valid.
struct Cas {
    bundle: Vec<Certificate>,
    dropped: usize,
}

fn check_cas(stored: &Material, now: SystemTime) -> Result<Cas, Problem> {
    if stored.ca_crt.is_empty() {
        return Err(Problem::Missing);
    }
    let all = inspect::parse_certificates(&stored.ca_crt).map_err(|_| Problem::Unreadable)?;
    let current = &all[0];
    if !current.is_ca {
        return Err(Problem::NotACa);
    }
    if !inspect::key_matches(&stored.ca_key, current) {
        return Err(Problem::KeyMismatch);
    }
    if now < current.not_before {
        return Err(Problem::NotYetValid);
    }
    if now > current.not_after {
        return Err(Problem::Expired);
    }
    let total = all.len();
    let bundle: Vec<Certificate> = all
        .into_iter()
        .enumerate()
        .filter(|(index, ca)| *index == 0 || (ca.is_ca && ca.is_valid_at(now)))
        .map(|(_, ca)| ca)
        .collect();
    Ok(Cas {
        dropped: total - bundle.len(),
        bundle,
    })
}

/// A serving certificate that works now, and which CA of the bundle signed it.
struct Serving {
    leaf: Certificate,
    issuer: usize,
}

fn check_serving(
    stored: &Material,
    bundle: &[Certificate],
    settings: &CertSettings,
    now: SystemTime,
) -> Result<Serving, Problem> {
    if stored.tls_crt.is_empty() {
        return Err(Problem::Missing);
    }
    let leaf = inspect::parse_certificates(&stored.tls_crt)
        .map_err(|_| Problem::Unreadable)?
        .remove(0);
    if !inspect::key_matches(&stored.tls_key, &leaf) {
        return Err(Problem::KeyMismatch);
    }
    if now < leaf.not_before {
        return Err(Problem::NotYetValid);
    }
    if now > leaf.not_after {
        return Err(Problem::Expired);
    }
    if leaf.dns_names != settings.dns_names().into_iter().collect() {
        return Err(Problem::WrongNames);
    }
    let server_name = settings.server_name();
    let issuer = bundle
        .iter()
        .position(|ca| inspect::accepted_by(&leaf, ca, &server_name, now))
        .ok_or(Problem::ForeignIssuer)?;
    Ok(Serving { leaf, issuer })
}

/// When a CA we issued went into the bundle (its validity starts [`issue::BACKDATE`] early).
fn issued_at(ca: &Certificate) -> SystemTime {
    ca.not_before + issue::BACKDATE
}

/// Decide what the stored contents need at `now`.
pub fn plan(stored: &Material, settings: &CertSettings, now: SystemTime) -> Plan {
    let cas = match check_cas(stored, now) {
        Ok(cas) => cas,
        Err(problem) => return Plan::Change(Change::GenerateAll(problem)),
    };
    let current = &cas.bundle[0];
    let serving = check_serving(stored, &cas.bundle, settings, now);
    if now >= current.renew_at(RENEW_DIVISOR) {
        return Plan::Change(Change::RotateCa {
            serving: serving.err(),
        });
    }
    let serving = match serving {
        Ok(serving) => serving,
        Err(problem) => return Plan::Change(Change::IssueServing(problem)),
    };
    let mut serving_check = serving.leaf.renew_at(RENEW_DIVISOR);
    if now >= serving_check {
        // Due. Signed by an older CA while the current one is new: wait until the API servers
        // have surely seen the current CA in the caBundle, if the old certificate lasts.
        let settled = issued_at(current) + CA_PROPAGATION;
        if serving.issuer != 0 && now < settled && serving.leaf.not_after > settled {
            serving_check = settled;
        } else {
            return Plan::Change(Change::IssueServing(Problem::RenewalDue));
        }
    }
    if cas.dropped > 0 {
        return Plan::Change(Change::PruneBundle);
    }
    let next_check = cas.bundle[1..]
        .iter()
        .map(Certificate::expired_at)
        .chain([current.renew_at(RENEW_DIVISOR), serving_check])
        .min()
        .unwrap_or(serving_check);
    Plan::Keep { next_check }
}

fn bundle_pem<'a>(cas: impl IntoIterator<Item = &'a Certificate>) -> Vec<u8> {
    cas.into_iter()
        .map(Certificate::pem)
        .collect::<String>()
        .into_bytes()
}

/// A new CA and a serving certificate signed by it, both issued at `now`.
pub fn generate_all(settings: &CertSettings, now: SystemTime) -> Result<Material, IssueError> {
    let ca = issue::new_ca(now)?;
    let ca_cert = issue::parse_ca(&ca)?;
    let serving = issue::new_serving(&ca_cert, ca.key_pem.as_bytes(), &settings.dns_names(), now)?;
    Ok(Material {
        ca_crt: ca.cert_pem.into_bytes(),
        ca_key: ca.key_pem.into_bytes(),
        tls_crt: serving.cert_pem.into_bytes(),
        tls_key: serving.key_pem.into_bytes(),
    })
}

/// Carry out one change on the stored contents. A change that needs the stored CA finds
/// it unusable only if the contents changed since [`plan`]; then everything is generated.
pub fn carry_out(
    change: Change,
    stored: &Material,
    settings: &CertSettings,
    now: SystemTime,
) -> Result<Material, IssueError> {
    let Ok(cas) = check_cas(stored, now) else {
        return generate_all(settings, now);
    };
    let names = settings.dns_names();
    Ok(match change {
        Change::GenerateAll(_) => return generate_all(settings, now),
        Change::RotateCa { serving } => {
            let ca = issue::new_ca(now)?;
            let ca_cert = issue::parse_ca(&ca)?;
            let (tls_crt, tls_key) = match serving {
                None => (stored.tls_crt.clone(), stored.tls_key.clone()),
                Some(_) => {
                    let issued = issue::new_serving(&ca_cert, ca.key_pem.as_bytes(), &names, now)?;
                    (issued.cert_pem.into_bytes(), issued.key_pem.into_bytes())
                }
            };
            Material {
                ca_crt: bundle_pem(std::iter::once(&ca_cert).chain(&cas.bundle)),
                ca_key: ca.key_pem.into_bytes(),
                tls_crt,
                tls_key,
            }
        }
        Change::IssueServing(_) => {
            let issued = issue::new_serving(&cas.bundle[0], &stored.ca_key, &names, now)?;
            Material {
                ca_crt: bundle_pem(&cas.bundle),
                ca_key: stored.ca_key.clone(),
                tls_crt: issued.cert_pem.into_bytes(),
                tls_key: issued.key_pem.into_bytes(),
            }
        }
        Change::PruneBundle => Material {
            ca_crt: bundle_pem(&cas.bundle),
            ..stored.clone()
        },
    })
}

/// The stored contents brought to a state that needs nothing, with the changes made.
#[derive(Debug, Clone)]
pub struct Converged {
    pub material: Material,
    pub changes: Vec<Change>,
    pub next_check: SystemTime,
}

/// Plan and carry out until nothing is left to do (at most a rotation and a reissue, so the
/// bound is never reached; if it were, the next check comes at once).
pub fn converge(
    stored: &Material,
    settings: &CertSettings,
    now: SystemTime,
) -> Result<Converged, IssueError> {
    const MAX_STEPS: usize = 4;
    let mut material = stored.clone();
    let mut changes = Vec::new();
    for _ in 0..MAX_STEPS {
        match plan(&material, settings, now) {
            Plan::Keep { next_check } => {
                return Ok(Converged {
                    material,
                    changes,
                    next_check,
                });
            }
            Plan::Change(change) => {
                material = carry_out(change, &material, settings, now)?;
                changes.push(change);
            }
        }
    }
    Ok(Converged {
        material,
        changes,
        next_check: now,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::certs::testing::{at, material, settings};

    const SECOND: Duration = Duration::from_secs(1);
    const DAY: Duration = Duration::from_secs(86_400);

    fn leaf(material: &Material) -> Certificate {
        inspect::parse_certificates(&material.tls_crt)
            .unwrap()
            .remove(0)
    }

    fn cas(material: &Material) -> Vec<Certificate> {
        inspect::parse_certificates(&material.ca_crt).unwrap()
    }

    fn plan_at(material: &Material, now: SystemTime) -> Plan {
        plan(material, &settings(), now)
    }

    fn change(problem: Problem) -> Plan {
        Plan::Change(Change::IssueServing(problem))
    }

    /// The stored contents with the serving certificate reissued at `now`.
    fn reissued(material: &Material, now: SystemTime) -> Material {
        carry_out(
            Change::IssueServing(Problem::RenewalDue),
            material,
            &settings(),
            now,
        )
        .unwrap()
    }

    fn accepted(leaf: &Certificate, ca: &Certificate, now: SystemTime) -> bool {
        inspect::accepted_by(leaf, ca, "logistis.logistis.svc", now)
    }

    #[test]
    fn the_empty_placeholder_gets_a_ca_and_a_serving_certificate_that_chains_to_it() {
        let now = at(0);
        let converged = converge(&Material::default(), &settings(), now).unwrap();
        assert_eq!(converged.changes, [Change::GenerateAll(Problem::Missing)]);
        let material = converged.material;
        let ca = &cas(&material)[0];
        let leaf = leaf(&material);
        assert!(ca.is_ca);
        assert!(accepted(&leaf, ca, now));
        assert_eq!(
            converged.next_check,
            leaf.renew_at(RENEW_DIVISOR),
            "nothing to do until the serving certificate's renewal point"
        );
        assert_eq!(
            plan_at(&material, now),
            Plan::Keep {
                next_check: converged.next_check
            }
        );
    }

    #[test]
    fn the_serving_certificate_is_renewed_from_the_last_third_of_its_life() {
        let material = material(at(0));
        let renew_at = leaf(&material).renew_at(RENEW_DIVISOR);
        // A year (plus the backdate) of lifetime: the mark is about four months before the end.
        assert_eq!(
            issue::days(leaf(&material).not_after.duration_since(renew_at).unwrap()),
            121
        );
        assert_eq!(
            plan_at(&material, renew_at - SECOND),
            Plan::Keep {
                next_check: renew_at
            }
        );
        assert_eq!(plan_at(&material, renew_at), change(Problem::RenewalDue));
        assert_eq!(
            plan_at(&material, leaf(&material).expired_at()),
            change(Problem::Expired)
        );

        let renewed = converge(&material, &settings(), renew_at).unwrap();
        assert_eq!(renewed.changes, [Change::IssueServing(Problem::RenewalDue)]);
        assert_eq!(renewed.material.ca_crt, material.ca_crt, "same CA");
        assert_eq!(renewed.material.ca_key, material.ca_key);
        let new_leaf = leaf(&renewed.material);
        assert_ne!(new_leaf.serial, leaf(&material).serial);
        assert!(accepted(&new_leaf, &cas(&material)[0], renew_at));
    }

    #[rstest]
    #[case::garbage(b"garbage".to_vec(), Problem::Unreadable)]
    #[case::empty(Vec::new(), Problem::Missing)]
    #[case::bad_base64(
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
        Problem::Unreadable
    )]
    fn an_unreadable_serving_certificate_is_reissued(
        #[case] tls_crt: Vec<u8>,
        #[case] problem: Problem,
    ) {
        let stored = Material {
            tls_crt,
            ..material(at(0))
        };
        assert_eq!(plan_at(&stored, at(60)), change(problem));
    }

    #[test]
    fn wrong_names_foreign_issuer_and_key_mismatch_are_reissued() {
        let ours = material(at(0));
        let theirs = material(at(0));
        let other_service = CertSettings {
            service: "elsewhere".into(),
            ..settings()
        };
        assert_eq!(
            plan(&ours, &other_service, at(60)),
            change(Problem::WrongNames)
        );
        let foreign = Material {
            tls_crt: theirs.tls_crt.clone(),
            tls_key: theirs.tls_key.clone(),
            ..ours.clone()
        };
        assert_eq!(plan_at(&foreign, at(60)), change(Problem::ForeignIssuer));
        let mismatched = Material {
            tls_key: theirs.tls_key.clone(),
            ..ours.clone()
        };
        assert_eq!(plan_at(&mismatched, at(60)), change(Problem::KeyMismatch));
        assert_eq!(
            plan_at(&reissued(&ours, at(7200)), at(60)),
            change(Problem::NotYetValid)
        );

        let fixed = converge(&foreign, &settings(), at(60)).unwrap();
        assert!(accepted(&leaf(&fixed.material), &cas(&ours)[0], at(60)));
    }

    #[test]
    fn an_unusable_ca_means_everything_is_generated_again() {
        let ours = material(at(0));
        let theirs = material(at(0));
        let generate = |problem| Plan::Change(Change::GenerateAll(problem));
        let cases = [
            (
                Material {
                    ca_crt: b"garbage".to_vec(),
                    ..ours.clone()
                },
                at(60),
                Problem::Unreadable,
            ),
            (
                Material {
                    ca_key: theirs.ca_key.clone(),
                    ..ours.clone()
                },
                at(60),
                Problem::KeyMismatch,
            ),
            (
                Material {
                    ca_crt: ours.tls_crt.clone(),
                    ca_key: ours.tls_key.clone(),
                    ..ours.clone()
                },
                at(60),
                Problem::NotACa,
            ),
            (ours.clone(), cas(&ours)[0].expired_at(), Problem::Expired),
            (
                ours.clone(),
                cas(&ours)[0].not_before - SECOND,
                Problem::NotYetValid,
            ),
        ];
        for (stored, now, problem) in cases {
            assert_eq!(plan_at(&stored, now), generate(problem), "{problem}");
            let fresh = converge(&stored, &settings(), now).unwrap().material;
            assert_ne!(fresh.ca_key, ours.ca_key);
            assert!(accepted(&leaf(&fresh), &cas(&fresh)[0], now));
        }
    }

    #[test]
    fn the_ca_rotates_in_the_last_third_of_its_life_and_keeps_the_old_one_trusted() {
        let original = material(at(0));
        let old_ca = cas(&original)[0].clone();
        let rotate_at = old_ca.renew_at(RENEW_DIVISOR);
        // A serving certificate issued 10 days before the mark is fresh at the mark.
        let stored = reissued(&original, rotate_at - 10 * DAY);
        assert!(matches!(
            plan_at(&stored, rotate_at - SECOND),
            Plan::Keep { .. }
        ));
        assert_eq!(
            plan_at(&stored, rotate_at),
            Plan::Change(Change::RotateCa { serving: None })
        );

        let rotated = converge(&stored, &settings(), rotate_at).unwrap();
        assert_eq!(rotated.changes, [Change::RotateCa { serving: None }]);
        let bundle = cas(&rotated.material);
        assert_eq!(bundle.len(), 2, "new CA first, old CA still trusted");
        assert_eq!(bundle[1].der, old_ca.der);
        assert_ne!(bundle[0].der, old_ca.der);
        assert_eq!(rotated.material.tls_crt, stored.tls_crt, "serving kept");
        assert!(accepted(&leaf(&rotated.material), &bundle[1], rotate_at));
        assert_eq!(
            rotated.next_check,
            leaf(&stored).renew_at(RENEW_DIVISOR),
            "next: the serving certificate's own renewal"
        );

        // At its renewal the serving certificate is signed by the new CA.
        let renew_at = rotated.next_check;
        let renewed = converge(&rotated.material, &settings(), renew_at).unwrap();
        assert_eq!(renewed.changes, [Change::IssueServing(Problem::RenewalDue)]);
        let new_leaf = leaf(&renewed.material);
        assert!(accepted(&new_leaf, &bundle[0], renew_at));
        assert!(!accepted(&new_leaf, &old_ca, renew_at));
        assert_eq!(cas(&renewed.material).len(), 2);

        // The old CA leaves the bundle when it expires, not before.
        let expiry = old_ca.expired_at();
        let late = reissued(&renewed.material, expiry - 10 * DAY);
        assert_eq!(
            plan_at(&late, expiry - SECOND),
            Plan::Keep { next_check: expiry }
        );
        assert_eq!(plan_at(&late, expiry), Plan::Change(Change::PruneBundle));
        let pruned = converge(&late, &settings(), expiry).unwrap();
        assert_eq!(cas(&pruned.material).len(), 1);
        assert_eq!(cas(&pruned.material)[0].der, bundle[0].der);
        assert_eq!(pruned.material.tls_crt, late.tls_crt);
    }

    #[test]
    fn a_due_serving_certificate_waits_until_the_new_ca_has_reached_the_api_servers() {
        let original = material(at(0));
        let rotate_at = cas(&original)[0].renew_at(RENEW_DIVISOR);
        // Issued 300 days before the mark: due (past 2/3 of its year) but valid for 65 more.
        let stored = reissued(&original, rotate_at - 300 * DAY);
        assert!(leaf(&stored).renew_at(RENEW_DIVISOR) < rotate_at);

        let rotated = converge(&stored, &settings(), rotate_at).unwrap();
        assert_eq!(rotated.changes, [Change::RotateCa { serving: None }]);
        assert_eq!(rotated.material.tls_crt, stored.tls_crt);
        let settled = rotate_at + CA_PROPAGATION;
        assert_eq!(rotated.next_check, settled);

        let waiting = converge(&rotated.material, &settings(), settled - SECOND).unwrap();
        assert!(waiting.changes.is_empty());
        let renewed = converge(&rotated.material, &settings(), settled).unwrap();
        assert_eq!(renewed.changes, [Change::IssueServing(Problem::RenewalDue)]);
        assert!(accepted(
            &leaf(&renewed.material),
            &cas(&rotated.material)[0],
            settled
        ));
    }

    #[test]
    fn a_broken_serving_certificate_is_replaced_during_a_rotation_at_once() {
        let original = material(at(0));
        let rotate_at = cas(&original)[0].renew_at(RENEW_DIVISOR);
        let stored = Material {
            tls_crt: b"garbage".to_vec(),
            ..original
        };
        assert_eq!(
            plan_at(&stored, rotate_at),
            Plan::Change(Change::RotateCa {
                serving: Some(Problem::Unreadable)
            })
        );
        let rotated = converge(&stored, &settings(), rotate_at).unwrap();
        assert_eq!(rotated.changes.len(), 1);
        assert!(accepted(
            &leaf(&rotated.material),
            &cas(&rotated.material)[0],
            rotate_at
        ));
    }

    #[test]
    fn changes_say_what_and_why() {
        assert_eq!(
            Change::IssueServing(Problem::ForeignIssuer).to_string(),
            "new serving certificate (the old one is not signed by the stored CA)"
        );
        assert_eq!(
            Change::GenerateAll(Problem::Missing).to_string(),
            "new CA and serving certificate (the CA is missing)"
        );
    }
}
