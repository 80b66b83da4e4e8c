use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::Ipv4Addr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::Serialize;

use super::Violation;
use super::violation::{describe_char, quote, too_many_entries};

const FIELD: &str = "destination_domains";
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
/// Inputs longer than this cannot become a valid domain; refusing them before IDNA keeps
/// the cost of a hostile 10,000-entry list bounded.
const MAX_INPUT_BYTES: usize = 4 * 1024;

/// The destination-domain list, validated and indexed for lookups by suffix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainRules {
    entries: Vec<String>,
    /// Normalised domain → `true` when included, `false` when excluded. Validation
    /// guarantees one sign per domain, so a suffix walk needs one lookup per label.
    included_by_domain: HashMap<String, bool>,
    has_positive: bool,
}

/// The outcome for one recipient, with the entry (or the rule) that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainDecision {
    pub allowed: bool,
    pub matched_entry: Option<String>,
    pub rule: DomainRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainRule {
    /// The most specific (longest label-aligned suffix) entry decided.
    Entry,
    /// The list is empty or holds exclusions only, and no exclusion matched: accepted.
    NoPositiveEntries,
    /// The list has positive entries and none matched: rejected.
    NoMatchingEntry,
    /// No domain part, an address literal, or an invalid domain, while the list has positive
    /// entries: rejected, as no entry can match it. With no positive entry ("any recipient")
    /// such a recipient is accepted: no exclusion can match it either, and `postmaster`
    /// (RFC 5321 §4.5.1) must get through.
    NotADomain,
}

impl DomainRules {
    /// Validates and normalises every entry, reporting every bad one at
    /// `/destination_domains/{i}` and an over-long list at `/destination_domains`.
    pub fn parse(entries: &[String]) -> Result<DomainRules, Vec<Violation>> {
        let mut violations: Vec<Violation> = too_many_entries(FIELD, entries.len()).into_iter().collect();
        let mut rules = DomainRules::default();
        // Normalised domain → (input index, included), to name the earlier entry in messages.
        let mut seen: HashMap<String, (usize, bool)> = HashMap::new();

        for (index, raw) in entries.iter().enumerate() {
            let pointer = format!("/{FIELD}/{index}");
            let (included, domain) = match parse_entry(raw) {
                Ok(parsed) => parsed,
                Err(message) => {
                    violations.push(Violation::new(pointer, message));
                    continue;
                }
            };
            match seen.entry(domain.clone()) {
                MapEntry::Occupied(earlier) => {
                    let (earlier_index, earlier_included) = *earlier.get();
                    violations.push(Violation::new(
                        pointer,
                        conflict_message(&domain, earlier_index, earlier_included, included),
                    ));
                }
                MapEntry::Vacant(slot) => {
                    slot.insert((index, included));
                    rules.entries.push(entry_text(included, &domain));
                    rules.has_positive |= included;
                    rules.included_by_domain.insert(domain, included);
                }
            }
        }

        if violations.is_empty() { Ok(rules) } else { Err(violations) }
    }

    /// Normalised entries in the order given, e.g. `"xn--bcher-kva.example"`, `"!hr.example.com"`.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    pub fn has_positive_entry(&self) -> bool {
        self.has_positive
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides one `RCPT TO` address. The most specific entry wins whatever the list order,
    /// so an exclusion listed after its parent is never dead (unlike first-match lists).
    pub fn evaluate(&self, recipient: &str) -> DomainDecision {
        let Some(domain) = recipient_domain(recipient) else {
            return DomainDecision { allowed: !self.has_positive, matched_entry: None, rule: DomainRule::NotADomain };
        };
        let mut suffix = domain.as_str();
        loop {
            if let Some(&included) = self.included_by_domain.get(suffix) {
                return DomainDecision {
                    allowed: included,
                    matched_entry: Some(entry_text(included, suffix)),
                    rule: DomainRule::Entry,
                };
            }
            match suffix.split_once('.') {
                Some((_, parent)) => suffix = parent,
                None => break,
            }
        }
        if self.has_positive {
            DomainDecision { allowed: false, matched_entry: None, rule: DomainRule::NoMatchingEntry }
        } else {
            DomainDecision { allowed: true, matched_entry: None, rule: DomainRule::NoPositiveEntries }
        }
    }
}

fn entry_text(included: bool, domain: &str) -> String {
    if included { domain.to_owned() } else { format!("!{domain}") }
}

fn conflict_message(domain: &str, earlier_index: usize, earlier_included: bool, included: bool) -> String {
    if earlier_included == included {
        format!("duplicates entry {earlier_index}: both are {} after normalisation; remove one", quote(domain))
    } else if earlier_included {
        format!("{} is included by entry {earlier_index} and excluded here; keep one of them", quote(domain))
    } else {
        format!("{} is excluded by entry {earlier_index} and included here; keep one of them", quote(domain))
    }
}

/// Splits off an optional leading `!` and normalises the domain; `Err` is the message for a 422.
fn parse_entry(raw: &str) -> Result<(bool, String), String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("empty entry; write a domain such as \"example.com\", or remove the entry".into());
    }
    let (included, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (false, rest.trim()),
        None => (true, trimmed),
    };
    if body.is_empty() {
        return Err("\"!\" must be followed by the domain to exclude, e.g. \"!hr.example.com\"".into());
    }
    if body.starts_with('!') {
        return Err("only one \"!\" is allowed, at the start of the entry".into());
    }
    let sign = if included { "" } else { "!" };
    normalise_domain(body).map(|domain| (included, domain)).map_err(|problem| problem.message(sign))
}

/// The domain of a recipient address, normalised like an entry; `None` when there is no
/// domain to match. The last `@` is used because a quoted local part may contain `@`.
pub(crate) fn recipient_domain(recipient: &str) -> Option<String> {
    let address = recipient.trim();
    let address = address.strip_prefix('<').unwrap_or(address);
    let address = address.strip_suffix('>').unwrap_or(address);
    let (_, domain) = address.rsplit_once('@')?;
    if domain.trim_start().starts_with('[') {
        return None;
    }
    normalise_domain(domain).ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DomainProblem {
    Empty,
    AddressLiteral,
    EmailAddress { domain: Option<String> },
    Wildcard { covering: Option<String> },
    Whitespace,
    BadChar(char),
    IpAddress,
    Idna,
    EmptyLabel,
    LabelTooLong { label: String, len: usize },
    Hyphen { label: String },
    TooLong { len: usize },
}

impl DomainProblem {
    /// `sign` is `"!"` for an exclusion, so a suggested rewrite keeps the entry's meaning.
    fn message(&self, sign: &str) -> String {
        match self {
            Self::Empty => "empty entry; write a domain such as \"example.com\", or remove the entry".into(),
            Self::AddressLiteral => "address literals such as \"[192.0.2.1]\" are not accepted; destination domains must be domain names".into(),
            Self::EmailAddress { domain: Some(domain) } => format!(
                "an email address is not a domain; write \"{sign}{domain}\" to cover every address at that domain"
            ),
            Self::EmailAddress { domain: None } => "must be a domain name, not an email address".into(),
            Self::Wildcard { covering: Some(domain) } => format!(
                "wildcards are not needed: \"{domain}\" already covers its subdomains; write \"{sign}{domain}\""
            ),
            Self::Wildcard { covering: None } => {
                "wildcards are not supported; a domain entry already covers the domain and all its subdomains".into()
            }
            Self::Whitespace => "spaces are not allowed in a domain name".into(),
            Self::BadChar(c) => format!(
                "contains {}, which is not allowed in a domain name; labels use letters, digits and hyphens",
                describe_char(*c)
            ),
            Self::IpAddress => "an IP address is not a domain name; recipients at address literals are never matched by destination domains".into(),
            Self::Idna => "not a valid internationalised domain name (IDNA conversion to ASCII failed)".into(),
            Self::EmptyLabel => "empty label: a leading dot, or two dots in a row".into(),
            Self::LabelTooLong { label, len } => format!(
                "label {} is {len} characters long; a label has at most {MAX_LABEL_LEN}",
                quote(label)
            ),
            Self::Hyphen { label } => format!("label {} must not start or end with a hyphen", quote(label)),
            Self::TooLong { len } => format!(
                "too long: {len} characters in ASCII form; a domain name has at most {MAX_DOMAIN_LEN}"
            ),
        }
    }
}

/// Trim, lowercase, strip one trailing dot, IDNA (UTS #46, non-transitional) to ASCII,
/// then enforce the DNS host-name shape. Shared by entries and recipients so the Unicode
/// and ASCII forms of a domain always compare equal.
fn normalise_domain(input: &str) -> Result<String, DomainProblem> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DomainProblem::Empty);
    }
    if text.starts_with('[') || text.ends_with(']') {
        return Err(DomainProblem::AddressLiteral);
    }
    if let Some((_, after)) = text.rsplit_once('@') {
        return Err(DomainProblem::EmailAddress { domain: normalise_domain(after).ok() });
    }
    if text.contains('*') {
        // Only one level is suggested, so hostile input cannot drive deep recursion.
        let covering =
            text.strip_prefix("*.").filter(|rest| !rest.contains('*')).and_then(|rest| normalise_domain(rest).ok());
        return Err(DomainProblem::Wildcard { covering });
    }
    if text.chars().any(char::is_whitespace) {
        return Err(DomainProblem::Whitespace);
    }
    if let Some(bad) = text.chars().find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) {
        return Err(DomainProblem::BadChar(bad));
    }
    if text.len() > MAX_INPUT_BYTES {
        return Err(DomainProblem::TooLong { len: text.chars().count() });
    }

    let lowered = text.to_lowercase();
    let ascii = Uts46::new()
        .to_ascii(lowered.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow, DnsLength::Ignore)
        .map_err(|_| DomainProblem::Idna)?;
    // After mapping, because UTS #46 turns full stops such as U+3002 into '.'.
    let domain = ascii.strip_suffix('.').unwrap_or(&ascii);
    if domain.is_empty() {
        return Err(DomainProblem::EmptyLabel);
    }
    for label in domain.split('.') {
        check_label(label)?;
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(DomainProblem::TooLong { len: domain.len() });
    }
    if domain.parse::<Ipv4Addr>().is_ok() {
        return Err(DomainProblem::IpAddress);
    }
    Ok(domain.to_owned())
}

fn check_label(label: &str) -> Result<(), DomainProblem> {
    if label.is_empty() {
        return Err(DomainProblem::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainProblem::LabelTooLong { label: label.to_owned(), len: label.len() });
    }
    // UTS #46 with the STD3 deny list should only ever produce these; checked anyway
    // because the stored form is what other systems will trust.
    if let Some(bad) = label.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) {
        return Err(DomainProblem::BadChar(bad));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainProblem::Hyphen { label: label.to_owned() });
    }
    Ok(())
}
