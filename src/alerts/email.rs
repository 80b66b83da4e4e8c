//! An alert as an e-mail to people: a short summary with a link to the message in the API —
//! never the message's content, which may be what attacked.
use super::event::AlertEvent;

/// A rendered e-mail: subject, plain text and HTML.
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// At most this many alerts in one e-mail: a mailbox gets one mail per alert while it keeps up,
/// and the alerts that piled up for it (an outbreak, a relay that was down) in mails of up to this
/// many each, not one mail apiece.
pub const PER_MAIL: usize = 25;

/// One e-mail for `events` (at least one, oldest first): one alert's summary, or a digest of
/// several, each with its own lines and link; links start at `public_url` (the API as people
/// reach it).
pub fn summary_of(events: &[&AlertEvent], public_url: &str) -> Summary {
    let described: Vec<Described> = events.iter().map(|e| describe(e, public_url)).collect();
    let subject = match described.as_slice() {
        [one] => one.subject.clone(),
        many => {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for d in many {
                match counts.iter_mut().find(|(what, _)| *what == d.what) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((d.what.clone(), 1)),
                }
            }
            let counted: Vec<String> = counts.iter().map(|(what, n)| format!("{n} {what}")).collect();
            format!("[mailsensor] {} alerts: {}", many.len(), counted.join(", "))
        }
    };
    let mut plain = String::new();
    let mut html = String::from("<html><body>");
    if described.len() > 1 {
        plain.push_str(&format!("{} alerts, oldest first.\n", described.len()));
        html.push_str(&format!("<p>{} alerts, oldest first.</p>", described.len()));
    }
    for (i, d) in described.iter().enumerate() {
        if described.len() > 1 {
            plain.push_str("\n----\n");
        }
        if i > 0 {
            html.push_str("<hr>");
        }
        for (label, value) in &d.lines {
            plain.push_str(&format!("{label}: {value}\n"));
        }
        if let Some(link) = &d.link {
            plain.push_str(&format!("\nIn the API: {link}\n"));
        }
        html.push_str("<table>");
        for (label, value) in &d.lines {
            html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape(label), escape(value)));
        }
        html.push_str("</table>");
        if let Some(link) = &d.link {
            html.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape(link)));
        }
    }
    plain.push_str("\nThe message itself is not attached: read it through the API if you must.\n");
    html.push_str("<p>The message itself is not attached.</p></body></html>");
    Summary { subject, text: plain, html }
}

/// One alert, ready to render.
struct Described {
    /// The subject of its own e-mail.
    subject: String,
    /// What it is, for a digest's subject: its verdict, or its event type.
    what: String,
    lines: Vec<(String, String)>,
    link: Option<String>,
}

fn describe(event: &AlertEvent, public_url: &str) -> Described {
    let data = &event.data;
    let text = |pointer: &str| data.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let base = public_url.trim_end_matches('/');
    let mut lines: Vec<(String, String)> = Vec::new();
    let (subject, what) = match text("/message/verdict").as_str() {
        "" => (format!("[mailsensor] {}", event.kind), event.kind.clone()),
        verdict => {
            let about = one_line(&text("/message/subject"), 120);
            (format!("[mailsensor] {verdict} message: {about}"), verdict.to_owned())
        }
    };
    for (label, pointer) in [
        ("Verdict", "/message/verdict"),
        ("Subject", "/message/subject"),
        ("From (envelope)", "/message/mail_from"),
        ("From (header)", "/message/header_from"),
        ("Client", "/message/client_ip"),
        ("Sensor", "/message/sensor_name"),
        ("Received", "/message/received_at"),
        ("Retro-hunt", "/ruleset_name"),
        ("State", "/state"),
        ("Destination", "/name"),
        ("Reason", "/reason"),
    ] {
        let value = text(pointer);
        if !value.is_empty() {
            lines.push((label.to_owned(), one_line(&value, 500)));
        }
    }
    if let Some(rcpt) = data.pointer("/message/rcpt_to").and_then(|r| r.as_array()) {
        let all: Vec<&str> = rcpt.iter().filter_map(|r| r.as_str()).collect();
        lines.push(("Recipients".to_owned(), one_line(&all.join(", "), 500)));
    }
    for (i, d) in data.get("detections").and_then(|d| d.as_array()).into_iter().flatten().take(20).enumerate() {
        let field = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let found = format!("{} ({}, {}) {}", field("description"), field("engine"), field("verdict"), field("object"));
        lines.push((format!("Detection {}", i + 1), one_line(found.trim(), 500)));
    }
    let href = match text("/message/href") {
        href if href.is_empty() => text("/href"),
        href => href,
    };
    let link = (!href.is_empty()).then(|| format!("{base}{href}"));
    lines.push(("Event".to_owned(), format!("{} #{} ({})", event.kind, event.sequence, event.id)));
    Described { subject, what, lines, link }
}

/// `value` on one line (a header or a table cell), at most `max` characters.
fn one_line(value: &str, max: usize) -> String {
    let flat: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

fn escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_links_to_the_message_and_escapes_what_the_sender_chose() {
        let event = AlertEvent {
            id: uuid::Uuid::nil(),
            kind: "message.detected".to_owned(),
            sequence: 3,
            timestamp: chrono::Utc::now(),
            tenant_id: uuid::Uuid::nil(),
            data: json!({"message": {"verdict": "malicious", "subject": "<b>pay\r\nnow</b>", "href": "/v1/x"},
                         "detections": [{"description": "EICAR", "engine": "clamav", "verdict": "malicious"}]}),
        };
        let s = summary_of(&[&event], "https://api.example.test/");
        assert_eq!(s.subject, "[mailsensor] malicious message: <b>pay  now</b>");
        assert!(s.text.contains("In the API: https://api.example.test/v1/x"));
        assert!(s.html.contains("&lt;b&gt;pay  now&lt;/b&gt;") && !s.html.contains("<b>pay"));
    }

    #[test]
    fn a_digest_counts_its_alerts_and_keeps_each_ones_lines_and_link() {
        let event = |sequence: i64, verdict: &str, href: &str| AlertEvent {
            id: uuid::Uuid::from_u128(sequence as u128),
            kind: "message.detected".to_owned(),
            sequence,
            timestamp: chrono::Utc::now(),
            tenant_id: uuid::Uuid::nil(),
            data: json!({"message": {"verdict": verdict, "subject": format!("mail {sequence}"), "href": href}}),
        };
        let (a, b, c) =
            (event(1, "malicious", "/v1/a"), event(2, "suspicious", "/v1/b"), event(3, "malicious", "/v1/c"));
        let s = summary_of(&[&a, &b, &c], "https://api.example.test");
        assert_eq!(s.subject, "[mailsensor] 3 alerts: 2 malicious, 1 suspicious");
        assert!(s.text.starts_with("3 alerts, oldest first."), "{}", s.text);
        for (n, link) in [(1, "/v1/a"), (2, "/v1/b"), (3, "/v1/c")] {
            assert!(s.text.contains(&format!("Subject: mail {n}")), "{}", s.text);
            assert!(s.text.contains(&format!("In the API: https://api.example.test{link}")), "{}", s.text);
            assert!(s.html.contains(&format!("https://api.example.test{link}")), "{}", s.html);
        }
        assert_eq!(s.text.matches("The message itself is not attached").count(), 1);
        // One alert alone is its own summary.
        assert_eq!(summary_of(&[&a], "https://api.example.test").subject, "[mailsensor] malicious message: mail 1");
    }
}
