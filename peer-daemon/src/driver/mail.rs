//! The driver's side of offline delivery: it hands the core's letters, takes and blocks to
//! the mailman task ([`crate::mailbox`]), and answers a deposit itself when there is no
//! mailman (no index, or `--no-mailbox`).

use std::time::Instant;

use tokio::sync::mpsc;

use crate::chat::IndexReply;
use crate::mailbox::{Job, Stats};

use super::Driver;

impl Driver {
    /// Letters for peers' mailboxes go to `mailman` (counting in `stats`).
    pub fn with_mailman(
        mut self,
        mailman: Option<mpsc::UnboundedSender<Job>>,
        stats: std::sync::Arc<Stats>,
    ) -> Self {
        self.mailman = mailman;
        self.mail_stats = stats;
        self
    }

    /// Hands a job to the mailman; without one, a deposit is answered at once.
    pub(super) fn hand_to_mailman(&mut self, job: Job) {
        let job = match &self.mailman {
            Some(mailman) => match mailman.send(job) {
                Ok(()) => return,
                Err(error) => error.0,
            },
            None => job,
        };
        if let Job::Deposit(outgoing) = job {
            let reply = IndexReply::Deposited {
                to: outgoing.to,
                id: outgoing.id,
                at: 0,
                receipt: matches!(outgoing.content, proto::mailbox::Content::Receipt { .. }),
                answer: Err("this daemon runs without an index, which keeps mailboxes".into()),
            };
            self.core.handle_index_reply(Instant::now(), reply);
        }
    }
}
