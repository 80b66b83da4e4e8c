//! An alert as an e-mail to people: a short summary with a link to the message in the API —
//! never the message's content, which may be what attacked.
use super::event::AlertEvent;

/// A rendered e-mail: subject, plain text and HTML.
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The summary of `event`; links start at `public_url` (the API as people reach it).
pub fn summary(event: &AlertEvent, public_url: &str) -> Summary {
    let data = &event.data;
    let text = |pointer: &str| data.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let base = public_url.trim_end_matches('/');
    let mut lines: Vec<(String, String)> = Vec::new();
    let subject = match text("/message/verdict").as_str() {
        "" => format!("[mailsensor] {}", event.kind),
        verdict => {
            let about = one_line(&text("/message/subject"), 120);
            format!("[mailsensor] {verdict} message: {about}")
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

    let mut plain = String::new();
    for (label, value) in &lines {
        plain.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(link) = &link {
        plain.push_str(&format!("\nIn the API: {link}\n"));
    }
    plain.push_str("\nThe message itself is not attached: read it through the API if you must.\n");

    let mut html = String::from("<html><body><table>");
    for (label, value) in &lines {
        html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape(label), escape(value)));
    }
    html.push_str("</table>");
    if let Some(link) = &link {
        html.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape(link)));
    }
    html.push_str("<p>The message itself is not attached.</p></body></html>");
    Summary { subject, text: plain, html }
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
        let s = summary(&event, "https://api.example.test/");
        assert_eq!(s.subject, "[mailsensor] malicious message: <b>pay  now</b>");
        assert!(s.text.contains("In the API: https://api.example.test/v1/x"));
        assert!(s.html.contains("&lt;b&gt;pay  now&lt;/b&gt;") && !s.html.contains("<b>pay"));
    }
}
