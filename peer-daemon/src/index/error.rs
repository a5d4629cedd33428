//! What went wrong talking to the index, sorted for the two people who need to know: the
//! daemon, which must tell trouble a retry may cure ([`IndexErrorKind::Transient`]) from
//! trouble it cannot ([`IndexErrorKind::Permanent`]), and the person at the prompt, who gets
//! one plain sentence they can act on. The raw chain (reqwest, hyper, the OS) is kept for
//! `RUST_LOG=debug`.

use std::error::Error as _;
use std::time::Duration;

use proto::display::sanitize;
use reqwest::StatusCode;

/// Longest piece of the index's own `{"error": …}` text quoted to a person.
pub const MAX_QUOTED_CHARS: usize = 200;

/// Whether retrying the same request later may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexErrorKind {
    /// Nothing a retry can fix: a refusal (4xx other than 408 and 429), a malformed index
    /// URL, or an answer we cannot accept. Retrying only hides it behind a prompt.
    Permanent,
    /// The index is unreachable, slow, overloaded (5xx, 408, 429) or dropped the answer
    /// half-way: retry with backoff.
    Transient,
}

/// A failed request to the index: its kind, the HTTP status when there was an answer, a
/// one-sentence message for a person and the full detail for the debug log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct IndexError {
    kind: IndexErrorKind,
    status: Option<StatusCode>,
    message: String,
    detail: String,
}

impl IndexError {
    /// Whether a retry may help.
    pub fn kind(&self) -> IndexErrorKind {
        self.kind
    }

    /// Shorthand for `kind() == Permanent`: the daemon should stop and say so.
    pub fn is_permanent(&self) -> bool {
        self.kind == IndexErrorKind::Permanent
    }

    /// The index's HTTP status, when it answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// One plain sentence for a person (also the `Display` form).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Everything known about the failure, error chain included: for `tracing::debug!`.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Logs the detail at debug level and hands the error on.
    pub(super) fn logged(self) -> Self {
        tracing::debug!(
            kind = ?self.kind,
            status = ?self.status.map(|s| s.as_u16()),
            detail = %self.detail,
            "index request failed"
        );
        self
    }
}

/// What a request was for, so its errors can say so: `prefix` starts the message ("could not
/// join #rust") unless the caller adds its own context (lookups), `base` names the index.
#[derive(Debug, Clone)]
pub(super) struct Doing<'a> {
    /// The index's base URL.
    pub base: &'a str,
    /// "could not …" wording, or `None` when the caller words it.
    pub prefix: Option<String>,
    /// The request, for the detail: `POST /register`.
    pub request: String,
    /// How long the request may take.
    pub timeout: Duration,
    /// Whether this is a registration (409 gets advice about names).
    pub registering: bool,
    /// What a successful answer is, for errors about its content: "the registration answer".
    pub answer: &'static str,
}

impl Doing<'_> {
    fn sentence(&self, reason: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}: {reason}"),
            None => reason.to_owned(),
        }
    }

    fn error(
        &self,
        kind: IndexErrorKind,
        status: Option<StatusCode>,
        reason: &str,
        detail: String,
    ) -> IndexError {
        IndexError {
            kind,
            status,
            message: self.sentence(reason),
            detail: format!("{} at {}: {detail}", self.request, self.base),
        }
    }

    /// The request never got a (complete) answer: cannot connect, timed out, cut off.
    pub fn transport(&self, error: &reqwest::Error) -> IndexError {
        let detail = chain(error);
        let base = self.base;
        let (kind, reason) = if error.is_builder() {
            (
                IndexErrorKind::Permanent,
                format!(
                    "the index address `{}` is not a usable URL ({}); write it like \
                     http://127.0.0.1:8080",
                    quoted(base),
                    quoted(&innermost(error))
                ),
            )
        } else if error.is_timeout() && error.is_connect() {
            (
                IndexErrorKind::Transient,
                format!(
                    "the index at {base} could not be reached within {}",
                    seconds(self.timeout.min(super::CONNECT_TIMEOUT))
                ),
            )
        } else if error.is_timeout() {
            (
                IndexErrorKind::Transient,
                format!(
                    "the index at {base} did not answer within {}",
                    seconds(self.timeout)
                ),
            )
        } else if error.is_connect() {
            (
                IndexErrorKind::Transient,
                format!(
                    "the index at {base} is unreachable ({})",
                    connect_reason(error)
                ),
            )
        } else if error.is_redirect() {
            (
                IndexErrorKind::Permanent,
                format!("the index at {base} redirects in circles or too often"),
            )
        } else if error.is_body() || error.is_decode() {
            (
                IndexErrorKind::Transient,
                format!("the index at {base} stopped answering half-way"),
            )
        } else {
            (
                IndexErrorKind::Transient,
                format!(
                    "the index at {base} closed the connection before answering ({})",
                    quoted(&innermost(error))
                ),
            )
        };
        self.error(kind, None, &reason, detail)
    }

    /// The index answered `status` (not a success), with `said` from its `{"error": …}` body
    /// when it sent one, and `body` as read (for the detail).
    pub fn refused(&self, status: StatusCode, said: Option<&str>, body: &str) -> IndexError {
        let kind = kind_of(status);
        let quote = said.map(quoted);
        let with_quote = |lead: String| match &quote {
            Some(said) => format!("{lead}: {said}"),
            None => lead,
        };
        let reason = match status {
            StatusCode::CONFLICT if self.registering => format!(
                "{}; choose another name with --name (or /nick), or run the daemon that holds \
                 this name's key (--state-dir)",
                with_quote("the index refused the name (409 Conflict)".to_owned())
            ),
            StatusCode::TOO_MANY_REQUESTS => {
                with_quote("the index is rate-limiting us (429 Too Many Requests)".to_owned())
            }
            StatusCode::REQUEST_TIMEOUT => with_quote(format!(
                "the index at {} gave up waiting for our request (408 Request Timeout)",
                self.base
            )),
            status if status.is_server_error() => with_quote(format!(
                "the index at {} is failing ({})",
                self.base,
                status_words(status)
            )),
            status => with_quote(format!("the index refused it ({})", status_words(status))),
        };
        let detail = format!("answered {status}: {}", capped(body, 4 * MAX_QUOTED_CHARS));
        self.error(kind, Some(status), &reason, detail)
    }

    /// A success whose content we cannot accept (another peer's record, a UUID that is not
    /// our key's): permanent, the same index would answer the same.
    pub fn unacceptable(&self, status: StatusCode, reason: &str) -> IndexError {
        self.error(
            IndexErrorKind::Permanent,
            Some(status),
            reason,
            format!("answered {status}, refused: {reason}"),
        )
    }

    /// A success whose body we refused (too large, not the expected JSON): the index (or
    /// something in front of it) misbehaves, which a restart or a fix on its side may cure,
    /// so it is retried rather than fatal; the daemon goes on with the peers it knows.
    pub fn malformed(&self, status: StatusCode, reason: &str) -> IndexError {
        self.error(
            IndexErrorKind::Transient,
            Some(status),
            reason,
            format!("answered {status}, refused: {reason}"),
        )
    }

    /// A request that could not even be built from the index URL.
    pub fn bad_url(&self, error: &dyn std::error::Error) -> IndexError {
        let reason = format!(
            "the index address `{}` is not a usable URL ({error}); write it like \
             http://127.0.0.1:8080",
            quoted(self.base)
        );
        self.error(IndexErrorKind::Permanent, None, &reason, error.to_string())
    }
}

/// Transient for what a later retry may cure (overload, timeouts, rate limits, 5xx);
/// permanent for every other refusal.
pub(super) fn kind_of(status: StatusCode) -> IndexErrorKind {
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        IndexErrorKind::Transient
    } else {
        IndexErrorKind::Permanent
    }
}

/// `409 Conflict`.
fn status_words(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Text from outside (the index's words, an OS error) made fit to show: one line, nothing
/// invisible, at most [`MAX_QUOTED_CHARS`] characters.
pub(super) fn quoted(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    capped(&sanitize(&one_line), MAX_QUOTED_CHARS)
}

fn capped(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `5 s`, or `250 ms` below a second.
fn seconds(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) && duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration >= Duration::from_secs(1) {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Why a connection failed, in the OS's usual words: "connection refused".
fn connect_reason(error: &reqwest::Error) -> String {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::HostUnreachable => "no route to the host".to_owned(),
                std::io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
                _ => quoted(&io.to_string()),
            };
        }
        source = cause.source();
    }
    quoted(&innermost(error))
}

/// The deepest cause's words: what actually failed.
fn innermost(error: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = error;
    while let Some(cause) = last.source() {
        last = cause;
    }
    last.to_string()
}

/// The error and all its causes: `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doing(registering: bool) -> Doing<'static> {
        Doing {
            base: "http://127.0.0.1:8080",
            prefix: Some(if registering {
                "could not register".to_owned()
            } else {
                "could not join #rust".to_owned()
            }),
            request: "POST /register".to_owned(),
            timeout: Duration::from_secs(5),
            registering,
            answer: "the registration answer",
        }
    }

    #[test]
    fn statuses_sort_into_permanent_and_transient() {
        use IndexErrorKind::*;
        for (status, kind) in [
            (400, Permanent),
            (401, Permanent),
            (403, Permanent),
            (404, Permanent),
            (409, Permanent),
            (413, Permanent),
            (422, Permanent),
            (408, Transient),
            (429, Transient),
            (500, Transient),
            (503, Transient),
            (507, Transient),
            (301, Permanent),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(kind_of(status), kind, "{status}");
            let error = doing(false).refused(status, None, "");
            assert_eq!((error.kind(), error.status()), (kind, Some(status)));
        }
    }

    #[test]
    fn a_taken_name_is_explained_with_the_indexs_words_and_advice() {
        let said = "the name `alice` is taken by another peer";
        let error = doing(true).refused(
            StatusCode::CONFLICT,
            Some(said),
            &format!(r#"{{"error":"{said}"}}"#),
        );
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            "could not register: the index refused the name (409 Conflict): the name `alice` is \
             taken by another peer; choose another name with --name (or /nick), or run the \
             daemon that holds this name's key (--state-dir)"
        );
        assert!(error.detail().contains("409"), "{}", error.detail());
        // Elsewhere a 409 is a plain refusal.
        let error = doing(false).refused(StatusCode::CONFLICT, Some(said), "");
        assert_eq!(
            error.message(),
            "could not join #rust: the index refused it (409 Conflict): the name `alice` is \
             taken by another peer"
        );
    }

    #[test]
    fn rate_limits_and_failures_say_so() {
        let error = doing(false).refused(StatusCode::TOO_MANY_REQUESTS, None, "");
        assert_eq!(
            error.message(),
            "could not join #rust: the index is rate-limiting us (429 Too Many Requests)"
        );
        let error =
            doing(false).refused(StatusCode::SERVICE_UNAVAILABLE, Some("database locked"), "");
        assert_eq!(
            error.message(),
            "could not join #rust: the index at http://127.0.0.1:8080 is failing (503 Service \
             Unavailable): database locked"
        );
    }

    #[test]
    fn the_indexs_words_are_one_safe_capped_line() {
        let hostile = format!("first\nsecond \u{1b}[31m red \u{202e} {}", "x".repeat(500));
        let error = doing(false).refused(StatusCode::BAD_REQUEST, Some(&hostile), &hostile);
        let message = error.message();
        assert!(
            !message.contains('\n') && !message.contains('\u{1b}'),
            "{message}"
        );
        assert!(!message.contains('\u{202e}'), "{message}");
        assert!(message.contains("first second ␛[31m red"), "{message}");
        assert!(message.chars().count() < MAX_QUOTED_CHARS + 80, "{message}");
        assert!(message.ends_with('…'), "{message}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(200)), "200 ms");
    }
}
