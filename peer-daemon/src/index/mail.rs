//! The mailbox on the index: depositing a sealed letter for a peer (signed by us, the
//! sender), and taking our own letters (owner-only). What the letters say is none of the
//! index's business: they are sealed before they get here and opened after.

use proto::api::mailbox::{Deposit, Mailbox, Taken, encode_sealed};
use proto::identity::Identity;
use reqwest::Method;
use uuid::Uuid;

use super::read::{error_of, read_json};
use super::{IndexClient, IndexError, MAX_ANSWER_BYTES, MAX_LIST_BYTES};

/// Letters asked for at once: 50 of at most 10 KiB each stay under [`MAX_LIST_BYTES`] in
/// base64.
pub const MAIL_BATCH: usize = 50;

impl IndexClient {
    /// Deposits `sealed` in `to`'s mailbox, signed by us.
    pub async fn deposit(
        &self,
        identity: &Identity,
        to: Uuid,
        sealed: &[u8],
    ) -> Result<(), IndexError> {
        let path = format!("/peers/{to}/mailbox");
        let doing = self.doing(
            &Method::POST,
            &path,
            Some("could not leave the message in the mailbox".to_owned()),
            "a deposit answer",
        );
        let body = serde_json::to_vec(&Deposit {
            from: identity.uuid(),
            sealed: encode_sealed(sealed),
        })
        .expect("a deposit serialises");
        let result = async {
            let response = self
                .send_signed_with(identity, Method::POST, &path, "", body, &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            Ok(())
        };
        result.await.map_err(IndexError::logged)
    }

    /// The oldest letters in our mailbox (at most [`MAIL_BATCH`]).
    pub async fn fetch_mail(&self, identity: &Identity) -> Result<Mailbox, IndexError> {
        let path = format!("/peers/{}/mailbox", identity.uuid());
        let doing = self.doing(
            &Method::GET,
            &path,
            Some("could not read our mailbox".to_owned()),
            "the mailbox",
        );
        let query = format!("limit={MAIL_BATCH}");
        let result = async {
            let response = self
                .send_signed_with(identity, Method::GET, &path, &query, Vec::new(), &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            let mut mailbox: Mailbox = read_json(response, MAX_LIST_BYTES, &doing).await?;
            // An index that answers more than asked for gets no more attention than asked.
            mailbox.letters.truncate(MAIL_BATCH);
            Ok(mailbox)
        };
        result.await.map_err(IndexError::logged)
    }

    /// Deletes the letters of our mailbox up to and including `through`.
    pub async fn take_mail(&self, identity: &Identity, through: i64) -> Result<u64, IndexError> {
        let path = format!("/peers/{}/mailbox", identity.uuid());
        let doing = self.doing(
            &Method::DELETE,
            &path,
            Some("could not empty our mailbox".to_owned()),
            "an answer",
        );
        let query = format!("through={through}");
        let result = async {
            let response = self
                .send_signed_with(identity, Method::DELETE, &path, &query, Vec::new(), &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            let taken: Taken = read_json(response, MAX_ANSWER_BYTES, &doing).await?;
            Ok(taken.deleted)
        };
        result.await.map_err(IndexError::logged)
    }

    /// Has the index refuse (`blocked`) or accept again mail from `peer` for us.
    pub async fn block(
        &self,
        identity: &Identity,
        peer: Uuid,
        blocked: bool,
    ) -> Result<(), IndexError> {
        let path = format!("/peers/{}/blocked/{peer}", identity.uuid());
        let method = if blocked { Method::PUT } else { Method::DELETE };
        let doing = self.doing(
            &method,
            &path,
            Some("could not tell the index whom we block".to_owned()),
            "an answer",
        );
        let result = async {
            let response = self
                .send_signed_with(identity, method.clone(), &path, "", Vec::new(), &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            Ok(())
        };
        result.await.map_err(IndexError::logged)
    }
}
