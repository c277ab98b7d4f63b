//! The accounts' part of a snapshot: plain, ordered, and still sealed (a snapshot holds no
//! plaintext personal data either).

use std::sync::atomic::Ordering;

use rkyv::{Archive, Deserialize, Serialize};

use super::{Accounts, Session, User, Verification};
use crate::clock::Millis;
use crate::ids::UserId;
use crate::record::{Digest, Sealed, SessionEnd};

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountsImage {
    pub next_user: u64,
    pub next_family: u64,
    pub users: Vec<User>,
    pub verifications: Vec<VerificationImage>,
    pub sessions: Vec<SessionImage>,
    pub revoked: Vec<(Digest, Millis)>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VerificationImage {
    pub email_index: Digest,
    pub email: Sealed,
    pub code_hash: Option<Digest>,
    pub issued_ms: Millis,
    pub expires_ms: Millis,
    pub failed: u32,
    pub token: Option<(Digest, Millis)>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    pub family: u64,
    pub user: UserId,
    pub current: Digest,
    pub expires_ms: Millis,
    pub issued: Vec<Digest>,
    pub ended: Option<SessionEnd>,
}

impl Accounts {
    pub fn image(&self) -> AccountsImage {
        let mut users: Vec<User> = self.users.iter().map(|u| u.clone()).collect();
        users.sort_by_key(|u| u.id);
        let mut verifications: Vec<VerificationImage> = self
            .verifications
            .iter()
            .map(|v| VerificationImage {
                email_index: *v.key(),
                email: v.email.clone(),
                code_hash: v.code_hash,
                issued_ms: v.issued_ms,
                expires_ms: v.expires_ms,
                failed: v.failed,
                token: v.token,
            })
            .collect();
        verifications.sort_by_key(|v| v.email_index);
        let mut sessions: Vec<SessionImage> = self
            .sessions
            .iter()
            .map(|s| SessionImage {
                family: *s.key(),
                user: s.user,
                current: s.current,
                expires_ms: s.expires_ms,
                issued: s.issued.clone(),
                ended: s.ended,
            })
            .collect();
        sessions.sort_by_key(|s| s.family);
        let mut revoked: Vec<(Digest, Millis)> = self
            .revoked
            .iter()
            .map(|r| (*r.key(), *r.value()))
            .collect();
        revoked.sort();
        AccountsImage {
            next_user: self.next_user.load(Ordering::Acquire),
            next_family: self.next_family.load(Ordering::Acquire),
            users,
            verifications,
            sessions,
            revoked,
        }
    }

    pub fn from_image(image: &AccountsImage) -> Self {
        let accounts = Accounts::new();
        accounts.next_user.store(image.next_user, Ordering::Release);
        accounts
            .next_family
            .store(image.next_family, Ordering::Release);
        for u in &image.users {
            accounts.by_email.insert(u.email_index, u.id);
            accounts.users.insert(u.id, u.clone());
        }
        for v in &image.verifications {
            if let Some((token, _)) = v.token {
                accounts.signup_tokens.insert(token, v.email_index);
            }
            accounts.verifications.insert(
                v.email_index,
                Verification {
                    email: v.email.clone(),
                    code_hash: v.code_hash,
                    issued_ms: v.issued_ms,
                    expires_ms: v.expires_ms,
                    failed: v.failed,
                    token: v.token,
                },
            );
        }
        for s in &image.sessions {
            for token in &s.issued {
                accounts.session_tokens.insert(*token, s.family);
            }
            accounts.sessions.insert(
                s.family,
                Session {
                    user: s.user,
                    current: s.current,
                    expires_ms: s.expires_ms,
                    issued: s.issued.clone(),
                    ended: s.ended,
                },
            );
        }
        for (jti, expires_ms) in &image.revoked {
            accounts.revoked.insert(*jti, *expires_ms);
        }
        accounts
    }
}
