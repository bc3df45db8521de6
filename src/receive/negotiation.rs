//! Association negotiation (PS3.8 7.1): answers an A-ASSOCIATE-RQ with an AC or RJ.
//!
//! Kept as a pure function of the request and our policy, so every refusal reason is
//! unit-tested without a socket. dicom-ul's own negotiation is private and cannot say
//! "local limit exceeded" or apply a SOP class policy, hence this module.

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, AssociationRQ, PresentationContextResult, PresentationContextResultReason,
    RequestorRoles, UserIdentity, UserIdentityType, UserVariableItem,
};
use sha2::{Digest, Sha256};

use crate::config::{AeTitle, ListenerUser, UnknownSopClasses};
use crate::standard::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, STANDARD_ROOT, STORAGE_COMMITMENT_PUSH,
    VERIFICATION, is_standard_storage, unpadded,
};

/// The DICOM application context name (PS3.7 A.2.1).
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
/// The item type of a User Identity sub-item in an A-ASSOCIATE-AC (PS3.7 D.3.3.7.2),
/// which dicom-ul writes only in its request form.
const USER_IDENTITY_AC_ITEM: u8 = 0x59;

/// What we accept.
pub struct Policy<'a> {
    pub ae_title: &'a AeTitle,
    pub allowed_callers: &'a [AeTitle],
    pub unknown_sop_classes: UnknownSopClasses,
    pub max_pdu: u32,
    /// Transfer syntaxes whose pixels the configured profiles can clean: where a
    /// context offers one of them, it is taken before the others (a modality that
    /// lists JPEG 2000 first must not lose every anonymized copy). `None`: every
    /// syntax is as good (nothing is cleaned), take the first offered.
    pub cleanable: Option<fn(&str) -> bool>,
    /// With any, the association must name one of these users.
    pub users: &'a [ListenerUser],
}

/// A presentation context we accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// An accepted association: the AC to send and what it agreed.
#[derive(Debug)]
pub struct Accepted {
    pub ac: AssociationAC,
    pub contexts: Vec<Context>,
    pub calling_ae_title: String,
    /// The largest PDU the requestor takes (0: no limit), for what we send it.
    pub peer_max_pdu: u32,
}

/// Answers an association request.
pub fn negotiate(rq: AssociationRQ, policy: &Policy) -> Result<Accepted, AssociationRJ> {
    let reject = |source| AssociationRJ {
        result: AssociationRJResult::Permanent,
        source,
    };
    if rq.protocol_version & 1 == 0 {
        return Err(reject(AssociationRJSource::ServiceProviderASCE(
            AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
        )));
    }
    if unpadded(&rq.application_context_name) != APPLICATION_CONTEXT {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
        )));
    }
    if rq.called_ae_title.trim() != policy.ae_title.as_str() {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::CalledAETitleNotRecognized,
        )));
    }
    let calling = rq.calling_ae_title.trim();
    if !policy.allowed_callers.is_empty()
        && !policy
            .allowed_callers
            .iter()
            .any(|ae| ae.as_str() == calling)
    {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::CallingAETitleNotRecognized,
        )));
    }

    let identity = rq.user_variables.iter().find_map(|item| match item {
        UserVariableItem::UserIdentityItem(identity) => Some(identity),
        _ => None,
    });
    if !identity_accepted(identity, policy.users) {
        return Err(reject(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::NoReasonGiven,
        )));
    }
    let roles: Vec<(&str, RequestorRoles)> = rq
        .user_variables
        .iter()
        .filter_map(|item| match item {
            UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) => {
                Some((unpadded(uid), *roles))
            }
            _ => None,
        })
        .collect();
    // We act as SCP only: a class the requestor will not be the SCU of has nothing
    // for us to do.
    let no_scu_role = |uid: &str| roles.iter().any(|(u, r)| *u == uid && !r.scu);

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    for pc in rq.presentation_contexts {
        let abstract_syntax = unpadded(&pc.abstract_syntax);
        let (reason, transfer_syntax) = if !abstract_syntax_accepted(abstract_syntax, policy) {
            (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                None,
            )
        } else if no_scu_role(abstract_syntax) {
            (PresentationContextResultReason::UserRejection, None)
        } else {
            let mut offered = pc
                .transfer_syntaxes
                .iter()
                .map(|ts| unpadded(ts))
                .filter(|ts| transfer_syntax_accepted(ts));
            let first = offered.clone().next();
            match policy
                .cleanable
                .and_then(|cleanable| offered.find(|ts| cleanable(ts)))
                .or(first)
            {
                Some(ts) => (
                    PresentationContextResultReason::Acceptance,
                    Some(ts.to_owned()),
                ),
                None => (
                    PresentationContextResultReason::TransferSyntaxesNotSupported,
                    None,
                ),
            }
        };
        if let Some(ts) = &transfer_syntax {
            contexts.push(Context {
                id: pc.id,
                abstract_syntax: abstract_syntax.to_owned(),
                transfer_syntax: ts.clone(),
            });
        }
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            // PS3.8 9.3.3.2: the field is not significant when the context is refused.
            transfer_syntax: transfer_syntax.unwrap_or_else(|| "1.2.840.10008.1.2".into()),
        });
    }

    // PS3.7 D.3.3: the sub-items in the order of their item types.
    let mut user_variables = vec![
        UserVariableItem::MaxLength(policy.max_pdu),
        UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
    ];
    // PS3.7 D.3.3.4: each proposed role answered, for the classes accepted: the SCU
    // role as proposed, never the SCP role (we send no C-STOREs, and a storage
    // commitment report needs no role on the requestor's own association).
    for (uid, proposed) in &roles {
        if contexts.iter().any(|c| c.abstract_syntax == *uid) {
            user_variables.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                (*uid).to_owned(),
                RequestorRoles {
                    scu: proposed.scu,
                    scp: false,
                },
            ));
        }
    }
    user_variables.push(UserVariableItem::ImplementationVersionName(
        IMPLEMENTATION_VERSION_NAME.into(),
    ));
    if identity.is_some_and(|i| i.positive_response_requested()) {
        // A zero-length server response: what types 1 and 2 call for, and all we
        // can give for the others, which are accepted unchecked.
        user_variables.push(UserVariableItem::Unknown(USER_IDENTITY_AC_ITEM, vec![0, 0]));
    }
    let peer_max_pdu = max_length(&rq.user_variables);
    Ok(Accepted {
        ac: AssociationAC {
            protocol_version: 1,
            calling_ae_title: rq.calling_ae_title.clone(),
            called_ae_title: rq.called_ae_title,
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: results,
            user_variables,
        },
        contexts,
        calling_ae_title: calling.to_owned(),
        peer_max_pdu,
    })
}

/// The Maximum Length a peer announced in its user information (PS3.8 D.1), 0
/// (no limit) when it announced none.
pub fn max_length(items: &[UserVariableItem]) -> u32 {
    items
        .iter()
        .find_map(|item| match item {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0)
}

/// Whether the association's User Identity (PS3.7 D.3.3.7) lets it in: anything
/// does when no `[[listener.user]]` is configured; else a username of the list,
/// with its password where it has one.
fn identity_accepted(identity: Option<&UserIdentity>, users: &[ListenerUser]) -> bool {
    if users.is_empty() {
        return true;
    }
    let Some(identity) = identity else {
        return false;
    };
    let username = identity.primary_field();
    let password = match identity.identity_type() {
        UserIdentityType::Username => None,
        UserIdentityType::UsernamePassword => Some(identity.secondary_field()),
        _ => return false,
    };
    // Compared as digests, so the time taken says nothing of the password.
    let digest = |bytes: &[u8]| Sha256::digest(bytes);
    users.iter().any(|user| {
        digest(user.username.as_bytes()) == digest(&username)
            && match (&user.password, &password) {
                (None, _) => true,
                (Some(wanted), Some(given)) => digest(wanted.expose().as_bytes()) == digest(given),
                (Some(_), None) => false,
            }
    })
}

/// Why `negotiate` rejected an association, in the card's words, for the log and
/// `status` (the peer gets the standard's reason code).
pub fn explain(rj: &AssociationRJ) -> String {
    use AssociationRJServiceUserReason as User;
    let why = match &rj.source {
        AssociationRJSource::ServiceUser(User::CalledAETitleNotRecognized) => {
            "the called AE title is not [listener] ae_title"
        }
        AssociationRJSource::ServiceUser(User::CallingAETitleNotRecognized) => {
            "the calling AE title is not in [listener] allowed_callers"
        }
        AssociationRJSource::ServiceUser(User::ApplicationContextNameNotSupported) => {
            "not the DICOM application context"
        }
        // The one refusal `negotiate` gives without a reason of the standard's.
        AssociationRJSource::ServiceUser(User::NoReasonGiven) => {
            "its User Identity matches no [[listener.user]]"
        }
        _ => return rj.source.to_string(),
    };
    format!("{} ({why})", rj.source)
}

/// The rejection for an association over the configured cap: transient, so the
/// modality retries later.
pub fn busy() -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    }
}

/// The rejection for a source address outside the allow-list.
pub fn address_refused() -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Permanent,
        source: AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
    }
}

fn abstract_syntax_accepted(uid: &str, policy: &Policy) -> bool {
    if uid == VERIFICATION || uid == STORAGE_COMMITMENT_PUSH || is_standard_storage(uid) {
        return true;
    }
    // Standard UIDs that are not storage (worklist, query/retrieve, MPPS, ...) are
    // services we do not provide; private ones are the machines' raw data classes.
    !uid.starts_with(STANDARD_ROOT) && policy.unknown_sop_classes == UnknownSopClasses::Accept
}

/// Transfer syntaxes are taken as offered, never transcoded: any one whose data set
/// encoding we can parse (pixel data stays opaque).
fn transfer_syntax_accepted(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.can_decode_dataset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    const US_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.6.1";
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

    fn rq(called: &str, calling: &str, contexts: &[(&str, &[&str])]) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: calling.into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: contexts
                .iter()
                .enumerate()
                .map(|(i, (abs, ts))| PresentationContextProposed {
                    id: (2 * i + 1) as u8,
                    abstract_syntax: abs.to_string(),
                    transfer_syntaxes: ts.iter().map(|t| t.to_string()).collect(),
                })
                .collect(),
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        }
    }

    fn with_policy<T>(
        callers: &[&str],
        unknown: UnknownSopClasses,
        f: impl FnOnce(&Policy) -> T,
    ) -> T {
        let ae = AeTitle::new("UPLINK").unwrap();
        let callers: Vec<AeTitle> = callers.iter().map(|c| AeTitle::new(c).unwrap()).collect();
        f(&Policy {
            ae_title: &ae,
            allowed_callers: &callers,
            unknown_sop_classes: unknown,
            max_pdu: 65536,
            cleanable: None,
            users: &[],
        })
    }

    fn reasons(accepted: &Accepted) -> Vec<PresentationContextResultReason> {
        accepted
            .ac
            .presentation_contexts
            .iter()
            .map(|r| r.reason.clone())
            .collect()
    }

    #[test]
    fn accepts_ultrasound_as_offered() {
        let accepted = with_policy(&[], UnknownSopClasses::Accept, |p| {
            negotiate(
                rq(
                    "UPLINK",
                    "US1",
                    &[
                        (US_IMAGE, &[JPEG_BASELINE, EXPLICIT_LE]),
                        (VERIFICATION, &["1.2.840.10008.1.2"]),
                    ],
                ),
                p,
            )
        })
        .unwrap();
        assert_eq!(accepted.contexts[0].transfer_syntax, JPEG_BASELINE);
        assert_eq!(accepted.contexts.len(), 2);
        assert_eq!(accepted.calling_ae_title, "US1");
        assert!(
            accepted
                .ac
                .user_variables
                .contains(&UserVariableItem::MaxLength(65536))
        );
    }

    #[test]
    fn a_syntax_the_profiles_can_clean_is_taken_first() {
        const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";
        let ae = AeTitle::new("UPLINK").unwrap();
        let offered: &[(&str, &[&str])] = &[
            (US_IMAGE, &[JPEG_2000, JPEG_BASELINE, EXPLICIT_LE]),
            (US_IMAGE, &[JPEG_2000]),
        ];
        let chosen = |cleanable: Option<fn(&str) -> bool>| {
            let policy = Policy {
                ae_title: &ae,
                allowed_callers: &[],
                unknown_sop_classes: UnknownSopClasses::Accept,
                max_pdu: 65536,
                cleanable,
                users: &[],
            };
            negotiate(rq("UPLINK", "US1", offered), &policy)
                .unwrap()
                .contexts
                .into_iter()
                .map(|c| c.transfer_syntax)
                .collect::<Vec<_>>()
        };
        assert_eq!(chosen(None), [JPEG_2000, JPEG_2000], "as offered");
        assert_eq!(
            chosen(Some(|ts| ts == JPEG_BASELINE || ts == EXPLICIT_LE)),
            [JPEG_BASELINE, JPEG_2000],
            "cleanable first, in the modality's order; else as offered"
        );
    }

    #[test]
    fn storage_commitment_is_accepted_and_roles_are_answered() {
        let mut request = rq(
            "UPLINK",
            "US1",
            &[
                (STORAGE_COMMITMENT_PUSH, &[EXPLICIT_LE]),
                (US_IMAGE, &[EXPLICIT_LE]),
            ],
        );
        let roles = |scu, scp| RequestorRoles { scu, scp };
        request.user_variables.extend([
            UserVariableItem::ScuScpRoleSelectionSubItem(
                STORAGE_COMMITMENT_PUSH.into(),
                roles(true, true),
            ),
            UserVariableItem::ScuScpRoleSelectionSubItem(US_IMAGE.into(), roles(false, true)),
        ]);
        let accepted =
            with_policy(&[], UnknownSopClasses::Accept, |p| negotiate(request, p)).unwrap();
        assert_eq!(
            reasons(&accepted),
            [
                PresentationContextResultReason::Acceptance,
                PresentationContextResultReason::UserRejection
            ],
            "a requestor that will not be the storage SCU has nothing to send"
        );
        let answered: Vec<_> = accepted
            .ac
            .user_variables
            .iter()
            .filter_map(|item| match item {
                UserVariableItem::ScuScpRoleSelectionSubItem(uid, r) => Some((uid.as_str(), *r)),
                _ => None,
            })
            .collect();
        assert_eq!(answered, [(STORAGE_COMMITMENT_PUSH, roles(true, false))]);
        assert_eq!(accepted.peer_max_pdu, 16384);
    }

    fn identified(identity: UserIdentity, users: &str) -> Result<Accepted, AssociationRJ> {
        #[derive(serde::Deserialize)]
        struct Users {
            #[serde(default)]
            user: Vec<ListenerUser>,
        }
        let users: Users = toml::from_str(users).unwrap();
        let ae = AeTitle::new("UPLINK").unwrap();
        let mut request = rq("UPLINK", "US1", &[(US_IMAGE, &[EXPLICIT_LE])]);
        request
            .user_variables
            .push(UserVariableItem::UserIdentityItem(identity));
        negotiate(
            request,
            &Policy {
                ae_title: &ae,
                allowed_callers: &[],
                unknown_sop_classes: UnknownSopClasses::Accept,
                max_pdu: 65536,
                cleanable: None,
                users: &users.user,
            },
        )
    }

    #[test]
    fn a_user_identity_gets_the_positive_response_it_asks_for() {
        let asked = |positive| {
            UserIdentity::new(
                positive,
                UserIdentityType::UsernamePassword,
                b"sono".to_vec(),
                b"pw".to_vec(),
            )
        };
        let answer =
            |accepted: &Accepted| {
                accepted.ac.user_variables.iter().any(|item| {
                    *item == UserVariableItem::Unknown(USER_IDENTITY_AC_ITEM, vec![0, 0])
                })
            };
        assert!(answer(&identified(asked(true), "").unwrap()));
        assert!(!answer(&identified(asked(false), "").unwrap()));
    }

    #[test]
    fn listener_users_admit_only_themselves() {
        let users = "[[user]]\nusername = 'sono'\npassword = 'pw'\n[[user]]\nusername = 'echo'\n";
        let id = |kind, user: &str, password: &str| {
            UserIdentity::new(
                true,
                kind,
                user.as_bytes().to_vec(),
                password.as_bytes().to_vec(),
            )
        };
        use UserIdentityType::{Jwt, Username, UsernamePassword};
        assert!(identified(id(UsernamePassword, "sono", "pw"), users).is_ok());
        assert!(identified(id(Username, "echo", ""), users).is_ok());
        for (kind, user, password) in [
            (UsernamePassword, "sono", "wrong"),
            (Username, "sono", ""),
            (UsernamePassword, "other", "pw"),
            (Jwt, "sono", ""),
        ] {
            let rj = identified(id(kind.clone(), user, password), users).unwrap_err();
            assert_eq!(
                rj.source,
                AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
                "{kind:?} {user} {password}"
            );
            assert!(
                explain(&rj).contains("[[listener.user]]"),
                "{}",
                explain(&rj)
            );
        }
        let ae = AeTitle::new("UPLINK").unwrap();
        let users: Vec<ListenerUser> = vec![toml::from_str("username = 'echo'").unwrap()];
        let policy = Policy {
            ae_title: &ae,
            allowed_callers: &[],
            unknown_sop_classes: UnknownSopClasses::Accept,
            max_pdu: 65536,
            cleanable: None,
            users: &users,
        };
        assert!(
            negotiate(rq("UPLINK", "US1", &[(US_IMAGE, &[EXPLICIT_LE])]), &policy).is_err(),
            "no identity at all"
        );
    }

    #[test]
    fn wrong_called_ae_is_rejected_permanently() {
        let rj = with_policy(&[], UnknownSopClasses::Accept, |p| {
            negotiate(rq("OTHER", "US1", &[(US_IMAGE, &[EXPLICIT_LE])]), p)
        })
        .unwrap_err();
        assert_eq!(rj.result, AssociationRJResult::Permanent);
        assert_eq!(
            rj.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized
            )
        );
    }

    #[test]
    fn calling_ae_outside_allow_list_is_rejected() {
        let rj = with_policy(&["US1"], UnknownSopClasses::Accept, |p| {
            negotiate(rq("UPLINK", "INTRUDER", &[(US_IMAGE, &[EXPLICIT_LE])]), p)
        })
        .unwrap_err();
        assert_eq!(
            rj.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized
            )
        );
        assert!(
            with_policy(&["US1"], UnknownSopClasses::Accept, |p| {
                negotiate(rq("UPLINK", "US1", &[(US_IMAGE, &[EXPLICIT_LE])]), p)
            })
            .is_ok()
        );
    }

    #[test]
    fn bad_protocol_version_and_context_name_are_rejected() {
        let mut request = rq("UPLINK", "US1", &[]);
        request.protocol_version = 2;
        let rj =
            with_policy(&[], UnknownSopClasses::Accept, |p| negotiate(request, p)).unwrap_err();
        assert!(matches!(
            rj.source,
            AssociationRJSource::ServiceProviderASCE(_)
        ));
        let mut request = rq("UPLINK", "US1", &[]);
        request.application_context_name = "1.2.3".into();
        let rj =
            with_policy(&[], UnknownSopClasses::Accept, |p| negotiate(request, p)).unwrap_err();
        assert_eq!(
            rj.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::ApplicationContextNameNotSupported
            )
        );
    }

    #[test]
    fn private_classes_follow_the_policy_and_standard_non_storage_is_refused() {
        let private = "1.2.840.113619.4.30"; // a vendor raw data class
        let worklist = "1.2.840.10008.5.1.4.31";
        let contexts: &[(&str, &[&str])] = &[(private, &[EXPLICIT_LE]), (worklist, &[EXPLICIT_LE])];
        let accept = with_policy(&[], UnknownSopClasses::Accept, |p| {
            negotiate(rq("UPLINK", "US1", contexts), p)
        })
        .unwrap();
        assert_eq!(
            reasons(&accept),
            [
                PresentationContextResultReason::Acceptance,
                PresentationContextResultReason::AbstractSyntaxNotSupported
            ]
        );
        let reject = with_policy(&[], UnknownSopClasses::Reject, |p| {
            negotiate(rq("UPLINK", "US1", contexts), p)
        })
        .unwrap();
        assert_eq!(
            reasons(&reject),
            [
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                PresentationContextResultReason::AbstractSyntaxNotSupported
            ]
        );
        assert!(reject.contexts.is_empty());
    }

    #[test]
    fn unknown_transfer_syntax_is_refused_per_context() {
        let accepted = with_policy(&[], UnknownSopClasses::Accept, |p| {
            negotiate(rq("UPLINK", "US1", &[(US_IMAGE, &["1.2.3.4.5"])]), p)
        })
        .unwrap();
        assert_eq!(
            reasons(&accepted),
            [PresentationContextResultReason::TransferSyntaxesNotSupported]
        );
    }

    #[test]
    fn every_transfer_syntax_the_issue_names_is_accepted() {
        for ts in [
            "1.2.840.10008.1.2",       // implicit VR little endian
            "1.2.840.10008.1.2.1",     // explicit VR little endian
            "1.2.840.10008.1.2.2",     // explicit VR big endian
            "1.2.840.10008.1.2.1.99",  // deflated
            "1.2.840.10008.1.2.4.50",  // JPEG baseline
            "1.2.840.10008.1.2.4.51",  // JPEG extended
            "1.2.840.10008.1.2.4.70",  // JPEG lossless
            "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
            "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
            "1.2.840.10008.1.2.4.91",  // JPEG 2000
            "1.2.840.10008.1.2.5",     // RLE
            "1.2.840.10008.1.2.4.100", // MPEG-2
            "1.2.840.10008.1.2.4.102", // MPEG-4 AVC
            "1.2.840.10008.1.2.4.107", // HEVC
        ] {
            assert!(transfer_syntax_accepted(ts), "{ts}");
        }
    }

    #[test]
    fn ultrasound_classes_are_known_storage() {
        for uid in [
            "1.2.840.10008.5.1.4.1.1.6.1",      // US Image
            "1.2.840.10008.5.1.4.1.1.3.1",      // US Multi-frame
            "1.2.840.10008.5.1.4.1.1.6.2",      // Enhanced US Volume
            "1.2.840.10008.5.1.4.1.1.7",        // Secondary Capture
            "1.2.840.10008.5.1.4.1.1.7.4",      // Multi-frame True Color SC
            "1.2.840.10008.5.1.4.1.1.88.33",    // Comprehensive SR
            "1.2.840.10008.5.1.4.1.1.88.22",    // Enhanced SR
            "1.2.840.10008.5.1.4.1.1.104.1",    // Encapsulated PDF
            "1.2.840.10008.5.1.4.1.1.77.1.4.1", // Video Photographic
            "1.2.840.10008.5.1.4.1.1.6",        // US Image (retired)
        ] {
            assert!(is_standard_storage(uid), "{uid}");
        }
    }
}
