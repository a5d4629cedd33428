//! Reading what the index answers as something outside our trust: bodies capped in size,
//! JSON checked, records whose key is not their UUID's refused, and errors put in words.

use std::time::Duration;

use anyhow::Context;
use proto::api::{ErrorBody, PeerRecord};
use proto::identity;
use serde::de::DeserializeOwned;

use super::MAX_ANSWER_BYTES;
use super::error::{Doing, IndexError};

/// `max-age=N` out of a `Cache-Control` value.
pub(super) fn parse_max_age(value: &str) -> Option<Duration> {
    value
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("max-age="))
        .find_map(|n| n.parse().ok())
        .map(Duration::from_secs)
}

/// Refuses a record whose key does not hash to its UUID: the index cannot vouch for someone
/// else's key (nor for a name under someone else's UUID).
pub(super) fn check_key(record: &PeerRecord) -> anyhow::Result<()> {
    if let Some(key) = &record.public_key {
        let key = identity::parse_public_key(key).context("the index returned a malformed key")?;
        anyhow::ensure!(
            identity::uuid_for_key(&key) == record.uuid,
            "the index returned a key that does not belong to {}",
            record.uuid
        );
    }
    Ok(())
}

/// The records of a list whose keys belong to their UUIDs; the others are dropped. Each
/// one's TTL fields agree on how long it may be cached, whichever an older index sent.
pub(super) fn verified(mut records: Vec<PeerRecord>) -> Vec<PeerRecord> {
    records.retain(|record| match check_key(record) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(peer = %record.uuid, error = %format!("{error:#}"), "ignoring a member record");
            false
        }
    });
    for record in &mut records {
        if let Some(secs) = record.cache_ttl() {
            record.set_cache_ttl(secs);
        }
    }
    records
}

/// Why an answer's body could not be taken.
enum BodyError {
    /// The connection failed or timed out while reading.
    Transport(reqwest::Error),
    /// Over the cap: the reason, in words.
    TooLarge(String),
}

/// The answer's body, at most `limit` bytes: refused up front when `Content-Length`
/// announces more, and as soon as more arrives when it does not.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    answer: &str,
) -> Result<Vec<u8>, BodyError> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(BodyError::TooLarge(format!(
            "the index announced {answer} of {length} bytes; refusing anything over {limit} bytes"
        )));
    }
    let mut body = Vec::new();
    loop {
        let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? else {
            return Ok(body);
        };
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "{answer} from the index went on past {limit} bytes; refused"
            )));
        }
        body.extend_from_slice(&chunk);
    }
}

/// The JSON body of a successful answer, read with [`read_capped`]: a transport failure
/// while reading is transient, anything too large or malformed is not acceptable.
pub(super) async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    limit: usize,
    doing: &Doing<'_>,
) -> Result<T, IndexError> {
    let status = response.status();
    let body = match read_capped(response, limit, doing.answer).await {
        Ok(body) => body,
        Err(BodyError::Transport(error)) => return Err(doing.transport(&error)),
        Err(BodyError::TooLarge(reason)) => return Err(doing.malformed(status, &reason)),
    };
    serde_json::from_slice(&body).map_err(|error| {
        doing.malformed(
            status,
            &format!(
                "{} from the index is not the expected JSON ({error})",
                doing.answer
            ),
        )
    })
}

/// The error for an answer that is not a success, with the index's own words when its body
/// is the usual `{"error": …}`.
pub(super) async fn error_of(response: reqwest::Response, doing: &Doing<'_>) -> IndexError {
    let status = response.status();
    let body = match read_capped(response, MAX_ANSWER_BYTES, "an error").await {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(BodyError::TooLarge(reason)) => reason,
        Err(BodyError::Transport(error)) => format!("(its body could not be read: {error})"),
    };
    let said = serde_json::from_str::<ErrorBody>(&body)
        .ok()
        .map(|body| body.error);
    doing.refused(status, said.as_deref(), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_age() {
        assert_eq!(
            parse_max_age("public, max-age=120"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_max_age("no-store"), None);
    }
}
