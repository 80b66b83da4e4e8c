use serde::Serialize;

/// One problem with one input field, in the shape of an RFC 9457 `errors[]` item.
///
/// `pointer` is an RFC 6901 JSON pointer relative to the settings document, so the
/// API can hand these straight to a 422 without knowing which rule produced them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

impl Violation {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), message: message.into() }
    }
}

/// Longest entry text echoed back in a message; a 422 must stay readable even when
/// someone pastes a megabyte into one field.
const QUOTE_LIMIT: usize = 80;

/// Quotes user input for a message: escaped like a JSON string, shortened with an ellipsis.
pub(crate) fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(QUOTE_LIMIT).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// Names one offending character; control and space characters get their code point
/// because quoting them would print something invisible.
pub(crate) fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() { format!("U+{:04X}", u32::from(c)) } else { format!("{:?}", c.to_string()) }
}

/// The list-level check shared by both lists.
pub(crate) fn too_many_entries(field: &str, count: usize) -> Option<Violation> {
    (count > super::MAX_LIST_ENTRIES).then(|| {
        Violation::new(
            format!("/{field}"),
            format!("at most {} entries are allowed; this list has {count}", super::MAX_LIST_ENTRIES),
        )
    })
}
