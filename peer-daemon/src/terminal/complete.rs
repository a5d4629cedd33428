//! Tab completion for the line editor: command words from the help text, then peer names
//! after `/msg` and `/fork`, sessions after `/switch`, rooms after `/join`, `/leave`, `/who`.

use rustyline::Helper;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use tokio::sync::watch;

use super::Names;
use crate::command::HELP;
use crate::output::SessionLine;

/// Tab completion of commands, peer names, sessions and rooms.
pub(super) struct Completion {
    pub(super) names: Names,
    pub(super) sessions: watch::Receiver<Vec<SessionLine>>,
}

/// Every command word in the help text (`/msg`, `/m`… as listed there).
fn command_words() -> Vec<&'static str> {
    let mut words: Vec<&str> = HELP
        .iter()
        .flat_map(|(usage, _)| usage.split([' ', ',']))
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

impl Completion {
    fn candidates(&self, before: &str, start: usize) -> Vec<String> {
        if start == 0 {
            return if before.starts_with('/') {
                command_words()
                    .into_iter()
                    .map(|w| format!("{w} "))
                    .collect()
            } else {
                Vec::new()
            };
        }
        if before[..start].split_whitespace().count() != 1 {
            return Vec::new();
        }
        let labels = || {
            self.sessions
                .borrow()
                .iter()
                .map(|s| s.label.clone())
                .collect::<Vec<_>>()
        };
        let mut words: Vec<String> = match before.split_whitespace().next().unwrap_or("") {
            "/msg" | "/m" | "/fork" | "/dm" => self
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                // A name that cannot be shown as it is would be inserted unseen.
                .filter(|n| !n.chars().any(proto::display::is_unsafe))
                .map(|n| format!("{n} "))
                .collect(),
            // `/switch` takes `#room`, `@peer` or the bare name.
            "/switch" | "/sw" => labels()
                .into_iter()
                .flat_map(|l| [l.trim_start_matches(['#', '@']).to_owned(), l])
                .collect(),
            "/leave" | "/part" | "/who" | "/join" | "/j" => labels()
                .into_iter()
                .filter_map(|l| l.strip_prefix('#').map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        words.sort();
        words.dedup();
        words
    }
}

impl Completer for Completion {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let mut candidates = self.candidates(before, start);
        candidates.retain(|c| c.starts_with(word));
        Ok((start, candidates))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_commands_names_and_rooms() {
        let names = Names::default();
        names
            .lock()
            .unwrap()
            .insert(uuid::Uuid::from_u128(7), "bob".into());
        let (_tx, sessions) = watch::channel(vec![
            SessionLine::test(0, "#lobby", true),
            SessionLine::test(1, "#rust", false),
            SessionLine::test(2, "@bob", false),
        ]);
        let completion = Completion { names, sessions };
        let complete = |line: &str| {
            let before = line;
            let start = before.rfind(' ').map_or(0, |i| i + 1);
            let mut c = completion.candidates(before, start);
            c.retain(|w| w.starts_with(&before[start..]));
            (start, c)
        };
        assert_eq!(complete("/jo"), (0, vec!["/join ".to_string()]));
        assert_eq!(complete("/msg b"), (5, vec!["bob ".to_string()]));
        assert_eq!(complete("/sw @"), (4, vec!["@bob".to_string()]));
        assert_eq!(complete("/sw b"), (4, vec!["bob".to_string()]));
        assert_eq!(complete("/leave r"), (7, vec!["rust".to_string()]));
        assert_eq!(
            complete("/msg bob hel").1,
            Vec::<String>::new(),
            "the text is not completed"
        );
        assert!(command_words().contains(&"/quit") && command_words().contains(&"/dm"));
    }
}
