//! The one redactor: every credential value a process resolved, removed from any text a
//! message could carry. The runner's connectors and the operator's log store share it, so a
//! value is found the same way (as it is, percent-encoded, as a word) wherever it is echoed.

use std::sync::{Arc, RwLock};

/// Credentials with fewer characters than this are removed only where they stand as a word of
/// their own (see [`Redactor::remember`]).
pub const SHORT_CREDENTIAL: usize = 8;

/// The credential values resolved so far, removed from any text a message could carry. Clones
/// share the values: the run has one.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<Remembered>>>,
}

/// A value the redactor removes, and how it is found in a text.
#[derive(Clone, PartialEq, Eq)]
struct Remembered {
    text: String,
    /// Only where it stands as a word of its own. A user name is often an ordinary word
    /// (`synqx`, `etl`) that also begins the names of databases and schemas a message must
    /// still show; a credential is removed wherever it occurs.
    whole_word: bool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.values.read().map(|v| v.len()).unwrap_or(0);
        write!(f, "Redactor({known} values)")
    }
}

impl Redactor {
    /// Remembers a credential (a password, a key, a token), as it is and percent-encoded (as
    /// a URL, a query string or a driver's connection string carries it); it is removed
    /// wherever it occurs. Empty values are ignored (they would match everywhere).
    ///
    /// A credential shorter than [`SHORT_CREDENTIAL`] characters is removed where it stands as
    /// a word of its own, like a user name: a short password such as `synqx` or `etl` is also
    /// a piece of the names a message must show (`__synqx_new_orders`, `etl_prod`), and
    /// removing it inside them would garble them while hiding nothing. Wherever a credential
    /// is actually written out (a URL, a connection string, a quoted value, a header) it stands
    /// between separators, and is removed there.
    pub fn remember(&self, value: &str) {
        self.add(value, value.chars().count() < SHORT_CREDENTIAL);
    }

    /// Remembers a name that must not be shown (a user name from a Secret or a sealed value):
    /// removed, as it is and percent-encoded, where it stands as a word of its own (between
    /// characters that are not letters, digits or `_`).
    pub fn remember_word(&self, value: &str) {
        self.add(value, true);
    }

    fn add(&self, value: &str, whole_word: bool) {
        if value.is_empty() {
            return;
        }
        if let Ok(mut values) = self.values.write() {
            for text in [value.to_string(), percent_encoded(value)] {
                // A value remembered both ways is a credential: removed wherever it occurs.
                if let Some(known) = values.iter_mut().find(|v| v.text == text) {
                    known.whole_word &= whole_word;
                    continue;
                }
                values.push(Remembered { text, whole_word });
            }
            // Longest first, so a value that contains another is replaced whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.text.len()));
        }
    }

    /// The text with every remembered value replaced by `***`.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        let text = text.to_string();
        match self.values.read() {
            Ok(values) => values.iter().fold(text, |text, value| {
                if value.whole_word {
                    replace_words(&text, &value.text)
                } else {
                    text.replace(value.text.as_str(), "***")
                }
            }),
            // A writer panicked while holding the lock: nothing can be trusted to be removed.
            Err(_) => "(message withheld: the redactor is unusable)".into(),
        }
    }
}

/// A redactor that knows these credentials, each remembered as [`Redactor::remember`] does.
impl<S: AsRef<str>> FromIterator<S> for Redactor {
    fn from_iter<I: IntoIterator<Item = S>>(credentials: I) -> Self {
        let redactor = Redactor::default();
        for credential in credentials {
            redactor.remember(credential.as_ref());
        }
        redactor
    }
}

/// `text` with each occurrence of `word` that no letter, digit or `_` touches replaced by
/// `***`. An edge of `word` that is itself a symbol (`@ops`) needs no boundary.
fn replace_words(text: &str, word: &str) -> String {
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let open_start = word.chars().next().is_some_and(word_char);
    let open_end = word.chars().next_back().is_some_and(word_char);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(word) {
        let end = at + word.len();
        let touched_before = open_start && text[..at].chars().next_back().is_some_and(word_char);
        let touched_after = open_end && text[end..].chars().next().is_some_and(word_char);
        if !touched_before && !touched_after {
            out.push_str(&text[copied..at]);
            out.push_str("***");
            copied = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// `value` with every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
