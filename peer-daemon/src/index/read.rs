//! Reading what the index answers as something outside our trust: bodies capped in size,
//! JSON checked, records whose key is not their UUID's refused, and errors put in words.

use std::time::Duration;

use anyhow::Context;
use proto::api::{ErrorBody, PeerRecord};
use proto::identity;
use serde::de::DeserializeOwned;

use super::{CONNECT_TIMEOUT, MAX_ANSWER_BYTES, REQUEST_TIMEOUT};

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

/// The records of a list whose keys belong to their UUIDs; the others are dropped.
pub(super) fn verified(mut records: Vec<PeerRecord>) -> Vec<PeerRecord> {
    records.retain(|record| match check_key(record) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(peer = %record.uuid, error = %format!("{error:#}"), "ignoring a member record");
            false
        }
    });
    records
}

/// `error` with what went wrong in words: timeouts and refused connections say so.
pub(super) fn explained(error: reqwest::Error) -> anyhow::Error {
    let words = describe(&error);
    anyhow::Error::new(error).context(words)
}

pub(super) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!(
            "no complete answer within {} s (connect timeout {} s)",
            REQUEST_TIMEOUT.as_secs(),
            CONNECT_TIMEOUT.as_secs()
        )
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        error.to_string()
    }
}

/// The answer's body, at most `limit` bytes: refused up front when `Content-Length`
/// announces more, and as soon as more arrives when it does not.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> anyhow::Result<Vec<u8>> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        anyhow::bail!(
            "the index announced an answer of {length} bytes; refusing anything over {limit} bytes"
        );
    }
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(explained)
            .context("reading the index's answer")?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > limit {
            anyhow::bail!("the index's answer went on past {limit} bytes; refused");
        }
        body.extend_from_slice(&chunk);
    }
}

/// The answer's JSON body, read with [`read_capped`].
pub(super) async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    limit: usize,
) -> anyhow::Result<T> {
    let body = read_capped(response, limit).await?;
    serde_json::from_slice(&body).context("the index's answer is not the expected JSON")
}

pub(super) async fn error_of(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    match read_json::<ErrorBody>(response, MAX_ANSWER_BYTES).await {
        Ok(body) => anyhow::anyhow!("index answered {status}: {}", body.error),
        Err(error) => anyhow::anyhow!("index answered {status} ({error:#})"),
    }
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
