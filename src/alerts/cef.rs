//! An alert as syslog carries it: one CEF:0 record (ArcSight's Common Event Format) inside an
//! RFC 5424 message, framed by octet counting (RFC 6587) for TCP and TLS (RFC 5425).
use super::event::{
    AlertEvent, DESTINATION_DISABLED, DESTINATION_TEST, MESSAGE_DETECTED, RETROHUNT_FINISHED, RETROHUNT_MATCHED,
};

/// The longest CEF record sent; longer values are cut to fit.
pub const MAX_CEF: usize = 32 * 1024;
/// Syslog facility 4, security/authorization messages.
const FACILITY: u8 = 4;

/// The CEF record of `event`, from the product at `version`; `host` names this replica when the
/// event is not about a message.
pub fn record(event: &AlertEvent, version: &str, host: &str) -> String {
    let data = &event.data;
    let text = |pointer: &str| data.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let verdict = text("/message/verdict");
    let (name, severity) = match event.kind.as_str() {
        MESSAGE_DETECTED => (format!("{verdict} message detected"), cef_severity(&verdict)),
        RETROHUNT_MATCHED => (format!("retro-hunt matched a stored message ({verdict})"), cef_severity(&verdict)),
        RETROHUNT_FINISHED => (format!("retro-hunt {}", text("/state")), 3),
        DESTINATION_DISABLED => ("alert destination disabled".to_owned(), 5),
        DESTINATION_TEST => ("test alert".to_owned(), 1),
        other => (other.to_owned(), 3),
    };
    let first = data.pointer("/detections/0");
    let of_first = |key: &str| first.and_then(|d| d.get(key)).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let rcpt: Vec<&str> = data
        .pointer("/message/rcpt_to")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let sensor = text("/message/sensor_name");
    let file_hash = match of_first("sha256") {
        hash if hash.is_empty() => text("/message/sha256"),
        hash => hash,
    };
    let mut extensions: Vec<(&str, String)> = vec![
        ("rt", event.timestamp.timestamp_millis().to_string()),
        ("dvchost", if sensor.is_empty() { host.to_owned() } else { sensor }),
        ("src", text("/message/client_ip")),
        ("suser", text("/message/mail_from")),
        ("duser", rcpt.join(",")),
        ("msg", text("/message/subject")),
        ("fname", of_first("object")),
        ("fileHash", file_hash),
        ("externalId", text("/message/id")),
        ("cs1Label", "verdict".to_owned()),
        ("cs1", verdict.clone()),
        ("cs2Label", "rule".to_owned()),
        (
            "cs2",
            match of_first("rule") {
                rule if rule.is_empty() => of_first("kind"),
                rule => rule,
            },
        ),
        ("cs3Label", "engine".to_owned()),
        ("cs3", of_first("engine")),
        ("cs4Label", "tenant".to_owned()),
        ("cs4", event.tenant_id.to_string()),
        ("cs5Label", "eventId".to_owned()),
        ("cs5", event.id.to_string()),
        ("cn1Label", "sequence".to_owned()),
        ("cn1", event.sequence.to_string()),
    ];
    extensions.retain(|(_, value)| !value.is_empty());
    let header = format!(
        "CEF:0|mailsensor|mailsensor|{}|{}|{}|{}|",
        header_field(version),
        header_field(&event.kind),
        header_field(&name),
        severity
    );
    fit(header, extensions)
}

/// 0–10: how bad a verdict is.
fn cef_severity(verdict: &str) -> u8 {
    match verdict {
        "malicious" => 10,
        "suspicious" => 7,
        "spam" => 4,
        _ => 3,
    }
}

/// The header and the extensions within [`MAX_CEF`]: the longest value is halved until it fits.
fn fit(header: String, mut extensions: Vec<(&str, String)>) -> String {
    loop {
        let line = extensions.iter().fold(header.clone(), |mut line, (key, value)| {
            if !line.ends_with('|') {
                line.push(' ');
            }
            line.push_str(key);
            line.push('=');
            line.push_str(&extension_value(value));
            line
        });
        if line.len() <= MAX_CEF {
            return line;
        }
        let Some((_, longest)) = extensions.iter_mut().max_by_key(|(_, v)| v.len()) else { return line };
        let mut cut = longest.len() / 2;
        while !longest.is_char_boundary(cut) {
            cut -= 1;
        }
        longest.truncate(cut);
        if longest.is_empty() {
            return line[..MAX_CEF.min(line.len())].to_owned();
        }
    }
}

/// A header field: `\` and `|` escaped; a line break would end the record, so it becomes a space.
fn header_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// An extension value: `\`, `=` escaped, line breaks written as `\n` and `\r`.
fn extension_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('=', "\\=").replace('\n', "\\n").replace('\r', "\\r")
}

/// The syslog severity of an event (RFC 5424): critical for malicious mail, warning for
/// suspicious, notice for the rest.
fn syslog_severity(event: &AlertEvent) -> u8 {
    match event.data.pointer("/message/verdict").and_then(|v| v.as_str()) {
        Some("malicious") => 2,
        Some("suspicious") => 4,
        _ => 5,
    }
}

/// `record` as one RFC 5424 message from `host`, framed with its length (RFC 6587 octet counting).
pub fn frame(event: &AlertEvent, record: &str, host: &str) -> Vec<u8> {
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let host = if host.is_empty() { "-".to_owned() } else { host };
    let message = format!(
        "<{}>1 {} {} mailsensor - {} - {}",
        FACILITY * 8 + syslog_severity(event),
        event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        host,
        event.kind,
        record
    );
    format!("{} {}", message.len(), message).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(subject: &str) -> AlertEvent {
        AlertEvent {
            id: uuid::Uuid::nil(),
            kind: MESSAGE_DETECTED.to_owned(),
            sequence: 7,
            timestamp: chrono::DateTime::from_timestamp(1_765_000_000, 0).unwrap(),
            tenant_id: uuid::Uuid::nil(),
            data: json!({
                "message": {"verdict": "malicious", "subject": subject, "client_ip": "192.0.2.1",
                            "rcpt_to": ["a@x.test", "b@x.test"], "sensor_name": "edge|1"},
                "detections": [{"engine": "clamav", "rule": "Eicar-Test-Signature", "object": "a=b.zip"}],
            }),
        }
    }

    #[test]
    fn escapes_headers_and_extensions_by_the_cef_rules() {
        let line = record(&event("a|b=c\\d\ne"), "1.0|x", "h");
        assert!(
            line.starts_with("CEF:0|mailsensor|mailsensor|1.0\\|x|message.detected|malicious message detected|10|")
        );
        assert!(line.contains(" msg=a|b\\=c\\\\d\\ne "), "{line}");
        assert!(line.contains("dvchost=edge|1 "), "{line}");
        assert!(line.contains("fname=a\\=b.zip "), "{line}");
        assert!(line.contains("duser=a@x.test,b@x.test "), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_huge_subject_is_cut_to_the_cap() {
        let line = record(&event(&"é".repeat(40_000)), "1", "h");
        assert!(line.len() <= MAX_CEF && line.contains("cs5Label=eventId"));
    }

    #[test]
    fn frames_count_octets() {
        let e = event("x");
        let framed = String::from_utf8(frame(&e, "CEF:0|…", "api 1")).unwrap();
        let (len, message) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert!(message.starts_with("<34>1 2025-12-06T05:46:40.000Z api1 mailsensor - message.detected - CEF:0|"));
    }
}
