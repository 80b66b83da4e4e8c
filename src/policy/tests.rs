use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::*;

const VECTORS: &str = include_str!("../../tests/fixtures/policy-vectors.json");
/// 100 MiB, the platform cap used throughout these tests.
const CAP: u64 = 104_857_600;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn domains(items: &[&str]) -> DomainRules {
    DomainRules::parse(&strings(items)).unwrap_or_else(|violations| panic!("{items:?} refused: {violations:?}"))
}

fn clients(items: &[&str]) -> ClientRules {
    ClientRules::parse(&strings(items)).unwrap_or_else(|violations| panic!("{items:?} refused: {violations:?}"))
}

fn domain_violations(items: &[&str]) -> Vec<Violation> {
    DomainRules::parse(&strings(items)).expect_err("expected a violation")
}

fn client_violations(items: &[&str]) -> Vec<Violation> {
    ClientRules::parse(&strings(items)).expect_err("expected a violation")
}

/// The single message for a one-entry list that must be refused.
fn domain_message(entry: &str) -> String {
    let violations = domain_violations(&[entry]);
    assert_eq!(violations.len(), 1, "{entry:?}: {violations:?}");
    assert_eq!(violations[0].pointer, "/destination_domains/0");
    violations[0].message.clone()
}

fn client_message(entry: &str) -> String {
    let violations = client_violations(&[entry]);
    assert_eq!(violations.len(), 1, "{entry:?}: {violations:?}");
    assert_eq!(violations[0].pointer, "/clients/0");
    violations[0].message.clone()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|_| panic!("bad test address {text:?}"))
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap_or_else(|_| panic!("bad test network {text:?}"))
}

fn limited(value: i64, unit: &str) -> SizeLimitDraft {
    SizeLimitDraft { unlimited: Some(false), value: Some(value), unit: Some(unit.to_owned()) }
}

fn unlimited() -> SizeLimitDraft {
    SizeLimitDraft { unlimited: Some(true), value: None, unit: None }
}

fn pointers(violations: &[Violation]) -> BTreeSet<String> {
    violations.iter().map(|violation| violation.pointer.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// The shared test vectors, every case.

fn json_strings(case: &str, value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{case}: expected an array"))
        .iter()
        .map(|item| item.as_str().unwrap_or_else(|| panic!("{case}: expected strings")).to_owned())
        .collect()
}

fn json_size_draft(value: &Value) -> SizeLimitDraft {
    SizeLimitDraft {
        unlimited: value.get("unlimited").and_then(Value::as_bool),
        value: value.get("value").and_then(Value::as_i64),
        unit: value.get("unit").and_then(Value::as_str).map(str::to_owned),
    }
}

fn json_settings(case: &str, settings: &Value) -> SettingsDraft {
    SettingsDraft {
        enabled: settings["enabled"].as_bool().unwrap_or_else(|| panic!("{case}: enabled")),
        destination_domains: json_strings(case, settings.get("destination_domains")),
        clients: json_strings(case, settings.get("clients")),
        message_size_limit: json_size_draft(&settings["message_size_limit"]),
    }
}

fn decision(case: &str, text: &Value) -> Decision {
    match text.as_str() {
        Some("accept") => Decision::Accept,
        Some("reject") => Decision::Reject,
        other => panic!("{case}: unknown decision {other:?}"),
    }
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("policy-vectors.json is valid JSON")
}

#[test]
fn vectors_cases() {
    let vectors = vectors();
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let draft = json_settings(name, &case["settings"]);
        let settings = SmtpSettings::parse(&draft, CAP)
            .unwrap_or_else(|violations| panic!("{name}: settings refused: {violations:?}"));
        let sensor_network = case["sensor_network"].as_str().map(net);
        let client_ip = ip(case["client_ip"].as_str().unwrap_or_else(|| panic!("{name}: client_ip")));
        let expect = &case["expect"];
        let rcpt = expect.get("rcpt").and_then(Value::as_object);
        let recipients: Vec<String> = rcpt.map(|map| map.keys().cloned().collect()).unwrap_or_default();
        let size = case.get("size").and_then(Value::as_u64);

        let probe = Probe { client_ip, recipients: &recipients, size, sensor_network };
        let evaluation = evaluate(&settings, &probe, CAP);

        assert_eq!(evaluation.connect.decision, decision(name, &expect["connect"]), "{name}: connect");
        if let Some(code) = expect.get("connect_reply").and_then(Value::as_str) {
            assert_eq!(evaluation.connect.reply.code.to_string(), code, "{name}: connect reply");
        } else {
            let code = if evaluation.connect.decision.is_accept() { 220 } else { 554 };
            assert_eq!(evaluation.connect.reply.code, code, "{name}: connect reply");
        }
        assert_eq!(evaluation.recipients.len(), recipients.len(), "{name}: recipients");
        for outcome in &evaluation.recipients {
            let expected = decision(name, &rcpt.expect("rcpt")[&outcome.recipient]);
            assert_eq!(outcome.decision, expected, "{name}: rcpt {}", outcome.recipient);
            let code = if expected.is_accept() { 250 } else { 550 };
            assert_eq!(outcome.reply.code, code, "{name}: rcpt reply {}", outcome.recipient);
        }
        match (expect.get("size"), &evaluation.size) {
            (Some(expected), Some(outcome)) => {
                assert_eq!(outcome.decision, decision(name, expected), "{name}: size");
                let code = if outcome.decision.is_accept() { 250 } else { 552 };
                assert_eq!(outcome.reply.code, code, "{name}: size reply");
            }
            (None, _) => {}
            (Some(_), None) => panic!("{name}: the case expects a size decision but gives no size"),
        }
        if let Some(max) = expect.get("max_message_bytes").and_then(Value::as_u64) {
            assert_eq!(settings.max_message_bytes(CAP), max, "{name}: max_message_bytes");
            if let Some(outcome) = &evaluation.size {
                assert_eq!(outcome.max_message_bytes, max, "{name}: size outcome max_message_bytes");
            }
        }
    }
}

#[test]
fn vectors_invalid() {
    let vectors = vectors();
    let cases = vectors["invalid"].as_array().expect("invalid");
    assert!(!cases.is_empty());
    for (number, case) in cases.iter().enumerate() {
        let field = case["field"].as_str().expect("field");
        let name = format!("invalid[{number}] {field} {}", case.get("why").and_then(Value::as_str).unwrap_or(""));
        let mut draft = SettingsDraft { enabled: true, message_size_limit: unlimited(), ..SettingsDraft::default() };
        match field {
            "destination_domains" => draft.destination_domains = json_strings(&name, case.get("entries")),
            "clients" => draft.clients = json_strings(&name, case.get("entries")),
            "message_size_limit" => draft.message_size_limit = json_size_draft(&case["value"]),
            other => panic!("{name}: unknown field {other}"),
        }
        let violations = match SmtpSettings::parse(&draft, CAP) {
            Ok(settings) => panic!("{name}: accepted as {settings:?}"),
            Err(violations) => violations,
        };
        if field == "message_size_limit" {
            assert!(
                violations.iter().any(|violation| violation.pointer.starts_with("/message_size_limit")),
                "{name}: {violations:?}"
            );
            continue;
        }
        let expected: BTreeSet<String> = case["bad_indexes"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: bad_indexes"))
            .iter()
            .map(|index| format!("/{field}/{}", index.as_u64().unwrap_or_else(|| panic!("{name}: index"))))
            .collect();
        assert_eq!(pointers(&violations), expected, "{name}: {violations:?}");
        assert_eq!(violations.len(), expected.len(), "{name}: one violation per bad entry: {violations:?}");
        for violation in &violations {
            assert!(!violation.message.is_empty(), "{name}: empty message at {}", violation.pointer);
        }
    }
}

#[test]
fn vectors_normalise() {
    let vectors = vectors();
    let cases = vectors["normalise"].as_array().expect("normalise");
    assert!(!cases.is_empty());
    for case in cases {
        let field = case["field"].as_str().expect("field");
        let input = case["in"].as_str().expect("in").to_owned();
        let output = case["out"].as_str().expect("out");
        let name = format!("normalise {field} {input:?}");
        let stored = match field {
            "destination_domains" => {
                DomainRules::parse(std::slice::from_ref(&input)).map(|rules| rules.entries().to_vec())
            }
            "clients" => ClientRules::parse(std::slice::from_ref(&input)).map(|rules| rules.entries().to_vec()),
            other => panic!("{name}: unknown field {other}"),
        };
        let stored = stored.unwrap_or_else(|violations| panic!("{name}: refused: {violations:?}"));
        assert_eq!(stored, vec![output.to_owned()], "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Destination domains.

#[test]
fn domain_most_specific_entry_wins_in_any_order() {
    for list in [["example.com", "!hr.example.com"], ["!hr.example.com", "example.com"]] {
        let rules = domains(&list);
        let sales = rules.evaluate("x@sales.example.com");
        assert_eq!(
            sales,
            DomainDecision { allowed: true, matched_entry: Some("example.com".into()), rule: DomainRule::Entry }
        );
        for rcpt in ["x@hr.example.com", "x@a.hr.example.com"] {
            let decision = rules.evaluate(rcpt);
            assert!(!decision.allowed, "{list:?} {rcpt}");
            assert_eq!(decision.matched_entry.as_deref(), Some("!hr.example.com"));
            assert_eq!(decision.rule, DomainRule::Entry);
        }
    }
}

#[test]
fn domain_match_is_label_aligned() {
    let rules = domains(&["example.com"]);
    assert!(rules.evaluate("x@a.b.example.com").allowed);
    for rcpt in ["x@badexample.com", "x@example.com.evil.test", "x@com", "x@xample.com"] {
        let decision = rules.evaluate(rcpt);
        assert_eq!((decision.allowed, decision.rule), (false, DomainRule::NoMatchingEntry), "{rcpt}");
    }
}

#[test]
fn domain_blank_and_exclusion_only_lists_accept_everything_else() {
    let empty = DomainRules::default();
    assert!(empty.is_empty() && !empty.has_positive_entry());
    assert_eq!(
        empty.evaluate("a@anything.test"),
        DomainDecision { allowed: true, matched_entry: None, rule: DomainRule::NoPositiveEntries }
    );
    let exclusions = domains(&["!spam.example"]);
    assert!(!exclusions.is_empty() && !exclusions.has_positive_entry());
    assert_eq!(exclusions.evaluate("x@other.test").rule, DomainRule::NoPositiveEntries);
    let excluded = exclusions.evaluate("x@a.spam.example");
    assert_eq!((excluded.allowed, excluded.rule), (false, DomainRule::Entry));
}

#[test]
fn domain_recipients_without_a_domain_match_no_entry() {
    // No entry can match a recipient without a domain: rejected where the list has a positive
    // entry, accepted where it has none ("any recipient", and `postmaster` must get through).
    for (rules, allowed) in [
        (DomainRules::default(), true),
        (domains(&["!x.test"]), true),
        (domains(&["example.com"]), false),
        (domains(&["example.com", "!x.test"]), false),
    ] {
        for rcpt in [
            "postmaster",
            "x@",
            "x@[192.0.2.1]",
            "x@[IPv6:2001:db8::1]",
            "x@192.0.2.1",
            "x@exa mple.com",
            "",
            "@",
            "<>",
        ] {
            assert_eq!(
                rules.evaluate(rcpt),
                DomainDecision { allowed, matched_entry: None, rule: DomainRule::NotADomain },
                "{rcpt:?}"
            );
        }
    }
}

#[test]
fn domain_recipient_forms() {
    let rules = domains(&["example.com"]);
    for rcpt in [
        "<x@example.com>",
        "  x@EXAMPLE.COM  ",
        "x@example.com.",
        "\"a@b\"@example.com",
        "\"odd@local\"@sub.example.com",
    ] {
        assert!(rules.evaluate(rcpt).allowed, "{rcpt:?}");
    }
    assert!(!rules.evaluate("x@example.com@evil.test").allowed);
}

#[test]
fn domain_idna() {
    let rules = domains(&["bücher.example", "!BÜCHER.other"]);
    assert_eq!(rules.entries(), ["xn--bcher-kva.example", "!xn--bcher-kva.other"]);
    for rcpt in ["x@bücher.example", "x@BÜCHER.example", "x@xn--bcher-kva.example", "x@shop.bücher.example"] {
        assert!(rules.evaluate(rcpt).allowed, "{rcpt}");
    }
    assert!(!rules.evaluate("x@bucher.example").allowed);
    assert!(!rules.evaluate("x@bücher.other").allowed);
    // Non-transitional UTS #46, as browsers do: ß stays ß.
    assert_eq!(domains(&["faß.de"]).entries(), ["xn--fa-hia.de"]);
    // Unicode full stops are dots.
    assert_eq!(domains(&["example\u{3002}com"]).entries(), ["example.com"]);
    // Unicode and ASCII forms of one domain are duplicates.
    let violations = domain_violations(&["bücher.example", "xn--bcher-kva.example"]);
    assert_eq!(pointers(&violations), BTreeSet::from(["/destination_domains/1".to_owned()]));
    // Broken punycode is not a domain.
    let broken = domain_message("xn--zz--.example");
    assert!(broken.contains("IDNA") || broken.contains("hyphen"), "{broken}");
}

#[test]
fn domain_normalisation() {
    let rules = domains(&[" Example.COM. ", "!HR.Example.com", "a-b.c0.example"]);
    assert_eq!(rules.entries(), ["example.com", "!hr.example.com", "a-b.c0.example"]);
    // One trailing dot only.
    assert!(domain_message("example.com..").contains("empty label"));
}

#[test]
fn domain_lengths() {
    let label63 = "a".repeat(63);
    let ok = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61)); // 253
    assert_eq!(ok.len(), 253);
    assert_eq!(domains(&[ok.as_str()]).entries(), std::slice::from_ref(&ok));
    assert!(domain_message(&format!("{ok}b")).contains("at most 253"));
    assert!(domain_message(&format!("{}.example", "a".repeat(64))).contains("64 characters long"));
}

#[test]
fn domain_rejection_messages() {
    assert_eq!(
        domain_message("*.example.org"),
        "wildcards are not needed: \"example.org\" already covers its subdomains; write \"example.org\""
    );
    assert_eq!(
        domain_message("!*.Example.org"),
        "wildcards are not needed: \"example.org\" already covers its subdomains; write \"!example.org\""
    );
    assert!(domain_message("ex*ample.org").starts_with("wildcards are not supported"));
    assert!(domain_message("*").starts_with("wildcards are not supported"));
    assert!(domain_message("user@example.net").contains("write \"example.net\""));
    assert!(domain_message("[192.0.2.1]").starts_with("address literals"));
    assert!(domain_message("192.0.2.1").starts_with("an IP address is not a domain name"));
    assert!(domain_message("").starts_with("empty entry"));
    assert!(domain_message("   ").starts_with("empty entry"));
    assert!(domain_message("!").starts_with("\"!\" must be followed"));
    assert!(domain_message("!!x.example").contains("only one \"!\""));
    assert!(domain_message("exa mple.com").contains("spaces"));
    assert!(domain_message("under_score.example").contains("\"_\""));
    assert!(domain_message("tab\u{0}.example").contains("U+0000"));
    assert!(domain_message("-bad.example").contains("hyphen"));
    assert!(domain_message("bad-.example").contains("hyphen"));
    assert!(domain_message("a..b.example").contains("empty label"));
    assert!(domain_message(".example").contains("empty label"));
}

#[test]
fn domain_duplicates_and_contradictions_name_the_earlier_entry() {
    let violations = domain_violations(&["example.com", "other.test", "EXAMPLE.com."]);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].pointer, "/destination_domains/2");
    assert!(violations[0].message.contains("duplicates entry 0"), "{}", violations[0].message);

    let violations = domain_violations(&["example.com", "!example.com"]);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].pointer, "/destination_domains/1");
    assert!(violations[0].message.contains("included by entry 0 and excluded here"));

    let violations = domain_violations(&["!example.com", "example.com", "!example.com"]);
    assert_eq!(
        pointers(&violations),
        BTreeSet::from(["/destination_domains/1".into(), "/destination_domains/2".into()])
    );
    assert!(violations[0].message.contains("excluded by entry 0 and included here"));
    assert!(violations[1].message.contains("duplicates entry 0"));
}

#[test]
fn domain_every_bad_entry_is_reported() {
    let violations = domain_violations(&["ok.example", "*.a", "", "ok.example", "b@c", "fine.example"]);
    let expected =
        ["/destination_domains/1", "/destination_domains/2", "/destination_domains/3", "/destination_domains/4"];
    assert_eq!(pointers(&violations), expected.iter().map(|p| (*p).to_owned()).collect());
}

#[test]
fn domain_list_limit() {
    let full: Vec<String> = (0..MAX_LIST_ENTRIES).map(|i| format!("d{i}.example")).collect();
    assert_eq!(DomainRules::parse(&full).expect("10,000 entries").entries().len(), MAX_LIST_ENTRIES);
    let mut over = full;
    over.push("one-more.example".into());
    let violations = DomainRules::parse(&over).expect_err("10,001 entries");
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].pointer, "/destination_domains");
    assert!(violations[0].message.contains("10000"));
}

#[test]
fn domain_ten_thousand_entries_evaluate_correctly() {
    // Half parents, half exclusions of a subdomain of those parents, shuffled by stride.
    let mut list = Vec::new();
    for i in 0..MAX_LIST_ENTRIES / 2 {
        list.push(format!("d{i}.example"));
        list.push(format!("!hr.d{i}.example"));
    }
    let len = list.len();
    let shuffled: Vec<String> = (0..len).map(|k| list[(k * 7919) % len].clone()).collect();
    let rules = DomainRules::parse(&shuffled).expect("10,000 entries");
    for i in 0..MAX_LIST_ENTRIES / 2 {
        let accepted = rules.evaluate(&format!("x@a.d{i}.example"));
        assert_eq!(accepted.matched_entry.as_deref(), Some(format!("d{i}.example").as_str()));
        assert!(accepted.allowed);
        let excluded = rules.evaluate(&format!("x@a.hr.d{i}.example"));
        assert!(!excluded.allowed);
        assert_eq!(excluded.matched_entry, Some(format!("!hr.d{i}.example")));
    }
    assert_eq!(rules.evaluate("x@d5000.example").rule, DomainRule::NoMatchingEntry);
}

// ---------------------------------------------------------------------------------------
// Clients.

#[test]
fn client_longest_prefix_wins_in_any_order() {
    let orders = [
        ["10.0.0.0/8", "!10.1.0.0/16", "10.1.2.0/24"],
        ["10.1.2.0/24", "10.0.0.0/8", "!10.1.0.0/16"],
        ["!10.1.0.0/16", "10.1.2.0/24", "10.0.0.0/8"],
    ];
    for list in orders {
        let rules = clients(&list);
        let check = |peer: &str, allowed: bool, entry: &str| {
            let decision = rules.evaluate(ip(peer), false, None);
            assert_eq!(
                decision,
                ClientDecision { allowed, matched_entry: Some(entry.into()), rule: ClientRule::Entry },
                "{list:?} {peer}"
            );
        };
        check("10.9.9.9", true, "10.0.0.0/8");
        check("10.1.3.3", false, "!10.1.0.0/16");
        check("10.1.2.3", true, "10.1.2.0/24");
        let outside = rules.evaluate(ip("11.0.0.1"), false, None);
        assert_eq!((outside.allowed, outside.rule), (false, ClientRule::NoMatchingEntry));
    }
}

#[test]
fn client_bare_address_is_a_host_route() {
    let rules = clients(&["192.0.2.0/24", "!192.0.2.7", "2001:db8::/32", "!2001:db8::25"]);
    assert_eq!(rules.entries(), ["192.0.2.0/24", "!192.0.2.7", "2001:db8::/32", "!2001:db8::25"]);
    assert!(!rules.evaluate(ip("192.0.2.7"), true, None).allowed);
    assert!(rules.evaluate(ip("192.0.2.8"), true, None).allowed);
    assert!(!rules.evaluate(ip("2001:db8::25"), true, None).allowed);
    assert!(rules.evaluate(ip("2001:db8::26"), true, None).allowed);
}

#[test]
fn client_default_routes_stay_in_their_family() {
    let v4 = clients(&["0.0.0.0/0"]);
    assert!(v4.evaluate(ip("203.0.113.1"), false, None).allowed);
    assert!(v4.evaluate(ip("::ffff:203.0.113.1"), false, None).allowed);
    assert!(!v4.evaluate(ip("2001:db8::1"), false, None).allowed);
    let v6 = clients(&["::/0"]);
    assert!(v6.evaluate(ip("2001:db8::1"), false, None).allowed);
    assert!(!v6.evaluate(ip("::ffff:203.0.113.1"), false, None).allowed);
    assert!(!v6.evaluate(ip("203.0.113.1"), false, None).allowed);
}

#[test]
fn client_ipv4_mapped_peer_is_matched_as_ipv4() {
    let rules = clients(&["192.0.2.0/24", "!192.0.2.7"]);
    let decision = rules.evaluate(ip("::ffff:192.0.2.5"), false, None);
    assert_eq!(decision.matched_entry.as_deref(), Some("192.0.2.0/24"));
    assert!(decision.allowed);
    assert!(!rules.evaluate(ip("::ffff:192.0.2.7"), false, None).allowed);

    // Also against the sensor's network, given in either form.
    let blank = ClientRules::default();
    for network in ["127.0.0.0/8", "::ffff:127.0.0.0/104"] {
        let decision = blank.evaluate(ip("::ffff:127.0.0.1"), false, Some(net(network)));
        assert_eq!((decision.allowed, decision.rule), (true, ClientRule::SensorSubnet), "{network}");
        let decision = blank.evaluate(ip("127.0.0.1"), false, Some(net(network)));
        assert_eq!((decision.allowed, decision.rule), (true, ClientRule::SensorSubnet), "{network}");
    }
}

#[test]
fn client_ipv4_mapped_entries_are_refused_with_the_ipv4_form() {
    assert_eq!(
        client_message("::ffff:192.0.2.7"),
        "IPv4-mapped IPv6 addresses are not accepted: peers connecting as ::ffff:a.b.c.d are matched as IPv4; write \"192.0.2.7\""
    );
    assert!(client_message("!::FFFF:192.0.2.0/120").ends_with("write \"!192.0.2.0/24\""));
    assert!(client_message("::ffff:c000:0207/128").ends_with("write \"192.0.2.7/32\""));
    // A short IPv6 prefix that merely contains the mapped range is an ordinary IPv6 network.
    assert_eq!(clients(&["::/64"]).entries(), ["::/64"]);
}

#[test]
fn client_blank_field_rules() {
    let blank = ClientRules::default();
    let subnet = Some(net("192.0.2.0/24"));
    let rule = |rules: &ClientRules, peer: &str, domains: bool, network: Option<IpNet>| {
        let decision = rules.evaluate(ip(peer), domains, network);
        (decision.allowed, decision.rule)
    };
    assert_eq!(rule(&blank, "198.51.100.1", true, subnet), (true, ClientRule::AnyClientBecauseDomainsSet));
    assert_eq!(rule(&blank, "192.0.2.9", false, subnet), (true, ClientRule::SensorSubnet));
    assert_eq!(rule(&blank, "198.51.100.1", false, subnet), (false, ClientRule::OutsideSensorSubnet));
    assert_eq!(rule(&blank, "192.0.2.9", false, None), (false, ClientRule::OutsideSensorSubnet));

    // Exclusions apply on top of either base.
    let exclusions = clients(&["!192.0.2.9"]);
    assert!(!exclusions.has_positive_entry() && !exclusions.is_empty());
    assert_eq!(rule(&exclusions, "192.0.2.9", true, subnet), (false, ClientRule::Entry));
    assert_eq!(rule(&exclusions, "192.0.2.9", false, subnet), (false, ClientRule::Entry));
    assert_eq!(rule(&exclusions, "192.0.2.10", false, subnet), (true, ClientRule::SensorSubnet));
    assert_eq!(rule(&exclusions, "192.0.2.10", true, None), (true, ClientRule::AnyClientBecauseDomainsSet));

    // A positive entry replaces the base entirely.
    let positive = clients(&["203.0.113.0/24"]);
    assert_eq!(rule(&positive, "192.0.2.9", false, subnet), (false, ClientRule::NoMatchingEntry));
    assert_eq!(rule(&positive, "192.0.2.9", true, subnet), (false, ClientRule::NoMatchingEntry));
}

#[test]
fn client_host_bits_message() {
    assert_eq!(client_message("10.0.0.5/24"), "host bits set; did you mean 10.0.0.0/24?");
    assert_eq!(client_message("2001:db8::1/32"), "host bits set; did you mean 2001:db8::/32?");
    assert_eq!(client_message("!10.0.0.5/24"), "host bits set; did you mean !10.0.0.0/24?");
}

#[test]
fn client_rejection_messages() {
    assert!(client_message("[::1]").contains("write \"::1\""));
    assert!(client_message("[2001:db8::1]:25").starts_with("brackets and ports"));
    assert_eq!(client_message("192.0.2.1:25"), "ports are not allowed (\":25\"); write \"192.0.2.1\"");
    assert!(client_message("10.0.0.0/33").contains("out of range for IPv4 (0–32)"));
    assert!(client_message("2001:db8::/129").contains("out of range for IPv6 (0–128)"));
    assert!(client_message("10.0.0.0/999999999999999999999").contains("out of range"));
    assert!(client_message("300.1.1.1").contains("not a valid IPv4 address"));
    assert!(client_message("010.1.1.1").contains("not a valid IPv4 address"));
    assert!(client_message("example.com").starts_with("host names are not allowed"));
    assert!(client_message("").starts_with("empty entry"));
    assert!(client_message("!").starts_with("\"!\" must be followed"));
    assert!(client_message("!!10.0.0.1").contains("only one \"!\""));
    assert!(client_message("1.2.3.4/").starts_with("missing the prefix length"));
    assert!(client_message("/24").starts_with("missing the address"));
    assert!(client_message("1.2.3.4/+8").contains("whole number"));
    assert!(client_message("1.2.3.0/24/8").contains("whole number"));
    assert!(client_message("1.2.3.4 /32").contains("spaces"));
    assert!(client_message("fe80::1%eth0").contains("zone"));
    assert!(client_message("2001:db8:::1").contains("not a valid IPv6 address"));
}

#[test]
fn client_normalisation() {
    let rules = clients(&[" 192.0.2.7 ", "2001:DB8:0:0::/32", "! 10.0.0.0/08", "2001:db8:1::1"]);
    assert_eq!(rules.entries(), ["192.0.2.7", "2001:db8::/32", "!10.0.0.0/8", "2001:db8:1::1"]);
}

#[test]
fn client_duplicates_and_contradictions() {
    for list in [["192.0.2.7", "192.0.2.7/32"], ["2001:db8::/32", "2001:DB8:0::/32"], ["::1", "::1/128"]] {
        let violations = client_violations(&list);
        assert_eq!(pointers(&violations), BTreeSet::from(["/clients/1".to_owned()]), "{list:?}");
        assert!(violations[0].message.starts_with("duplicates entry 0"), "{list:?}");
    }
    let violations = client_violations(&["10.0.0.0/8", "!10.0.0.0/8"]);
    assert_eq!(pointers(&violations), BTreeSet::from(["/clients/1".to_owned()]));
    assert_eq!(violations[0].message, "10.0.0.0/8 is included by entry 0 and excluded here; keep one of them");
    let violations = client_violations(&["!192.0.2.7/32", "192.0.2.7"]);
    assert_eq!(violations[0].message, "192.0.2.7/32 is excluded by entry 0 and included here; keep one of them");
}

#[test]
fn client_list_limit() {
    let full: Vec<String> = (0..MAX_LIST_ENTRIES).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    assert_eq!(ClientRules::parse(&full).expect("10,000 entries").entries().len(), MAX_LIST_ENTRIES);
    let mut over = full;
    over.push("192.0.2.1".into());
    let violations = ClientRules::parse(&over).expect_err("10,001 entries");
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].pointer, "/clients");
}

#[test]
fn client_ten_thousand_entries_evaluate_correctly() {
    // 8,000 networks of mixed lengths, 2,000 host exclusions inside them, all shuffled.
    let mut list = Vec::new();
    for i in 0..8_000u32 {
        list.push(format!("10.{}.{}.0/24", i / 256, i % 256));
    }
    for i in 0..2_000u32 {
        list.push(format!("!10.{}.{}.7", i / 256, i % 256));
    }
    let len = list.len();
    let shuffled: Vec<String> = (0..len).map(|k| list[(k * 7919) % len].clone()).collect();
    let rules = ClientRules::parse(&shuffled).expect("10,000 entries");
    for i in 0..8_000u32 {
        let (b, c) = (i / 256, i % 256);
        let host = rules.evaluate(ip(&format!("10.{b}.{c}.7")), false, None);
        assert_eq!(host.allowed, i >= 2_000, "10.{b}.{c}.7");
        let other = rules.evaluate(ip(&format!("10.{b}.{c}.200")), false, None);
        assert_eq!(other.matched_entry, Some(format!("10.{b}.{c}.0/24")));
        assert!(other.allowed);
    }
    assert_eq!(rules.evaluate(ip("10.250.0.1"), false, None).rule, ClientRule::NoMatchingEntry);
}

// ---------------------------------------------------------------------------------------
// Message size limit.

#[test]
fn size_units_are_binary() {
    assert_eq!(limited(512, "KB").parse(CAP), Ok(SizeLimit::Limited { value: 512, unit: SizeUnit::KB }));
    assert_eq!(SizeLimit::Limited { value: 512, unit: SizeUnit::KB }.max_bytes(CAP), 524_288);
    assert_eq!(SizeLimit::Limited { value: 10, unit: SizeUnit::MB }.max_bytes(CAP), 10_485_760);
    assert_eq!(SizeLimit::Limited { value: 1, unit: SizeUnit::GB }.max_bytes(u64::MAX), 1_073_741_824);
    assert_eq!(SizeLimit::Unlimited.max_bytes(CAP), CAP);
    assert!(SizeLimit::Unlimited.allows(CAP, CAP));
    assert!(!SizeLimit::Unlimited.allows(CAP + 1, CAP));
    // A stored limit that a later, lower cap overtook is clamped to the cap.
    assert_eq!(SizeLimit::Limited { value: 50, unit: SizeUnit::MB }.max_bytes(20 << 20), 20 << 20);
}

#[test]
fn size_unit_serialises_exactly() {
    assert_eq!(serde_json::to_string(&SizeUnit::KB).ok().as_deref(), Some("\"KB\""));
    assert_eq!(serde_json::from_str::<SizeUnit>("\"GB\"").ok(), Some(SizeUnit::GB));
    assert!(serde_json::from_str::<SizeUnit>("\"gb\"").is_err());
}

#[test]
fn size_field_combinations() {
    let only = |draft: SizeLimitDraft| draft.parse(CAP).expect_err("refused");
    assert_eq!(unlimited().parse(CAP), Ok(SizeLimit::Unlimited));
    let no_flag = SizeLimitDraft { unlimited: None, value: Some(25), unit: Some("MB".into()) };
    assert_eq!(no_flag.parse(CAP), Ok(SizeLimit::Limited { value: 25, unit: SizeUnit::MB }));

    let both = only(SizeLimitDraft { unlimited: Some(true), value: Some(25), unit: None });
    assert_eq!(
        both,
        vec![Violation::new("/message_size_limit", "value and unit must be omitted when unlimited is true")]
    );
    assert_eq!(pointers(&only(SizeLimitDraft::default())), BTreeSet::from(["/message_size_limit".to_owned()]));
    let neither = only(SizeLimitDraft { unlimited: Some(false), value: None, unit: None });
    assert_eq!(
        pointers(&neither),
        BTreeSet::from(["/message_size_limit/value".to_owned(), "/message_size_limit/unit".to_owned()])
    );
    for value in [0, -5, i64::MIN] {
        let violations = only(limited(value, "MB"));
        assert_eq!(violations, vec![Violation::new("/message_size_limit/value", "must be a positive whole number")]);
    }
    let bad_unit = only(limited(10, "TB"));
    assert_eq!(pointers(&bad_unit), BTreeSet::from(["/message_size_limit/unit".to_owned()]));
    assert!(bad_unit[0].message.contains("\"KB\", \"MB\" or \"GB\""));
    let lower = only(limited(10, "mb"));
    assert!(lower[0].message.contains("write \"MB\""), "{}", lower[0].message);
    // Both fields wrong: both reported.
    assert_eq!(only(limited(0, "xx")).len(), 2);
}

#[test]
fn size_platform_cap() {
    assert_eq!(limited(100, "MB").parse(CAP), Ok(SizeLimit::Limited { value: 100, unit: SizeUnit::MB }));
    assert_eq!(limited(102_400, "KB").parse(CAP), Ok(SizeLimit::Limited { value: 102_400, unit: SizeUnit::KB }));
    let over = limited(101, "MB").parse(CAP).expect_err("above the cap");
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].pointer, "/message_size_limit/value");
    assert!(over[0].message.contains("104857600 bytes (100 MB)"), "{}", over[0].message);
    assert!(over[0].message.contains("the largest value in MB is 100"), "{}", over[0].message);
    let gb = limited(1, "GB").parse(CAP).expect_err("above the cap");
    assert!(gb[0].message.contains("use a smaller unit"), "{}", gb[0].message);
    let odd_cap = limited(1, "GB").parse(150_000_000).expect_err("above the cap");
    assert!(odd_cap[0].message.contains("150000000 bytes (about 143.1 MB)"), "{}", odd_cap[0].message);
}

#[test]
fn size_overflow_counts_as_too_large() {
    for unit in ["KB", "MB", "GB"] {
        let violations = limited(i64::MAX, unit).parse(u64::MAX).expect_err("overflow");
        assert_eq!(pointers(&violations), BTreeSet::from(["/message_size_limit/value".to_owned()]), "{unit}");
    }
    // Just below overflow with an unbounded cap is fine.
    let value = i64::try_from(u64::MAX / (1 << 30)).expect("fits");
    assert!(limited(value, "GB").parse(u64::MAX).is_ok());
    assert!(limited(value + 1, "GB").parse(u64::MAX).is_err());
    assert_eq!(SizeLimit::Limited { value: u64::MAX, unit: SizeUnit::GB }.max_bytes(u64::MAX), u64::MAX);
}

#[test]
fn size_human_bytes() {
    use super::size::human_bytes;
    assert_eq!(human_bytes(104_857_600), "100 MB");
    assert_eq!(human_bytes(1 << 30), "1 GB");
    assert_eq!(human_bytes(1536), "about 1.5 KB");
    assert_eq!(human_bytes(1000), "1000 bytes");
    assert_eq!(human_bytes(u64::MAX), "about 17179869184.0 GB");
}

// ---------------------------------------------------------------------------------------
// Settings.

#[test]
fn settings_defaults() {
    let settings = SmtpSettings::default();
    assert!(!settings.enabled);
    assert!(settings.destination_domains.is_empty() && settings.clients.is_empty());
    assert_eq!(settings.message_size_limit, SizeLimit::Unlimited);
    assert_eq!(settings.max_message_bytes(CAP), CAP);
}

#[test]
fn settings_report_every_violation_of_every_field() {
    let draft = SettingsDraft {
        enabled: true,
        destination_domains: strings(&["ok.example", "*.bad", "also@bad"]),
        clients: strings(&["10.0.0.5/24", "192.0.2.1"]),
        message_size_limit: limited(0, "TB"),
    };
    let violations = SmtpSettings::parse(&draft, CAP).expect_err("refused");
    let expected = [
        "/destination_domains/1",
        "/destination_domains/2",
        "/clients/0",
        "/message_size_limit/value",
        "/message_size_limit/unit",
    ];
    assert_eq!(pointers(&violations), expected.iter().map(|p| (*p).to_owned()).collect());
    assert_eq!(violations.len(), expected.len());
}

#[test]
fn settings_round_trip_through_the_draft() {
    let draft = SettingsDraft {
        enabled: true,
        destination_domains: strings(&[" Bücher.Example. ", "!HR.example.com"]),
        clients: strings(&["2001:DB8::/32", "!192.0.2.7"]),
        message_size_limit: limited(25, "MB"),
    };
    let settings = SmtpSettings::parse(&draft, CAP).expect("valid");
    assert_eq!(settings.max_message_bytes(CAP), 26_214_400);
    let stored = settings.to_draft();
    assert_eq!(stored.destination_domains, ["xn--bcher-kva.example", "!hr.example.com"]);
    assert_eq!(stored.clients, ["2001:db8::/32", "!192.0.2.7"]);
    assert_eq!(stored.message_size_limit, limited(25, "MB"));
    assert_eq!(SmtpSettings::parse(&stored, CAP), Ok(settings));
    assert_eq!(SmtpSettings::default().to_draft().message_size_limit, unlimited());
}

// ---------------------------------------------------------------------------------------
// Evaluation and replies.

fn settings(domains: &[&str], clients: &[&str], size: SizeLimitDraft) -> SmtpSettings {
    let draft = SettingsDraft {
        enabled: true,
        destination_domains: strings(domains),
        clients: strings(clients),
        message_size_limit: size,
    };
    SmtpSettings::parse(&draft, CAP).unwrap_or_else(|violations| panic!("refused: {violations:?}"))
}

#[test]
fn evaluate_disabled_still_explains_every_stage() {
    let mut disabled = settings(&["example.com"], &["0.0.0.0/0"], limited(1, "KB"));
    disabled.enabled = false;
    let recipients = strings(&["x@example.com", "x@other.test"]);
    let probe = Probe { client_ip: ip("192.0.2.1"), recipients: &recipients, size: Some(2048), sensor_network: None };
    let evaluation = evaluate(&disabled, &probe, CAP);
    assert_eq!(evaluation.connect.decision, Decision::Reject);
    assert_eq!(evaluation.connect.rule, ConnectRule::Disabled);
    assert_eq!((evaluation.connect.reply.code, evaluation.connect.reply.enhanced), (421, "4.3.2"));
    assert_eq!(evaluation.recipients[0].decision, Decision::Accept);
    assert_eq!(evaluation.recipients[1].decision, Decision::Reject);
    let size = evaluation.size.as_ref().expect("size given");
    assert_eq!((size.decision, size.max_message_bytes), (Decision::Reject, 1024));
    assert!(!evaluation.accepted);
}

#[test]
fn evaluate_accepted_needs_one_accepted_recipient_and_the_size() {
    let rules = settings(&["example.com"], &[], limited(1, "MB"));
    let run = |recipients: &[&str], size: Option<u64>| {
        let recipients = strings(recipients);
        let probe = Probe { client_ip: ip("203.0.113.1"), recipients: &recipients, size, sensor_network: None };
        evaluate(&rules, &probe, CAP).accepted
    };
    assert!(run(&["x@other.test", "x@example.com"], None));
    assert!(!run(&["x@other.test"], None));
    assert!(run(&[], None));
    assert!(run(&["x@example.com"], Some(1 << 20)));
    assert!(!run(&["x@example.com"], Some((1 << 20) + 1)));

    let refused = settings(&[], &["192.0.2.0/24"], unlimited());
    let probe = Probe { client_ip: ip("203.0.113.1"), recipients: &[], size: None, sensor_network: None };
    let evaluation = evaluate(&refused, &probe, CAP);
    assert!(!evaluation.accepted);
    assert_eq!(evaluation.connect.rule, ConnectRule::Client(ClientRule::NoMatchingEntry));
    assert_eq!(
        evaluation.connect.reply.line(),
        "554 5.7.1 client 203.0.113.1 is not allowed to send mail to this sensor"
    );
}

#[test]
fn evaluate_reports_matched_entries_and_rules() {
    let rules = settings(&["example.com", "!hr.example.com"], &["!192.0.2.7"], unlimited());
    let recipients = strings(&["x@a.hr.example.com", "x@[192.0.2.1]"]);
    let probe = Probe { client_ip: ip("192.0.2.8"), recipients: &recipients, size: Some(5), sensor_network: None };
    let evaluation = evaluate(&rules, &probe, CAP);
    assert_eq!(evaluation.connect.rule, ConnectRule::Client(ClientRule::AnyClientBecauseDomainsSet));
    assert_eq!(evaluation.connect.reply.line(), "220 2.0.0 ready");
    assert_eq!(evaluation.recipients[0].matched_entry.as_deref(), Some("!hr.example.com"));
    assert_eq!(evaluation.recipients[1].rule, DomainRule::NotADomain);
    let size = evaluation.size.as_ref().expect("size given");
    assert_eq!((size.max_message_bytes, size.decision), (CAP, Decision::Accept));
    assert_eq!(size.reply.code, 250);
}

#[test]
fn evaluation_serialises_as_flat_snake_case() {
    let rules = settings(&[], &[], unlimited());
    let recipients = strings(&["x@example.com"]);
    let probe = Probe {
        client_ip: ip("::ffff:127.0.0.1"),
        recipients: &recipients,
        size: Some(10),
        sensor_network: Some(net("127.0.0.0/8")),
    };
    let json = serde_json::to_value(evaluate(&rules, &probe, CAP)).expect("serialises");
    assert_eq!(json["connect"]["decision"], "accept");
    assert_eq!(json["connect"]["rule"], "sensor_subnet");
    assert_eq!(json["connect"]["reply"]["code"], 220);
    assert_eq!(json["recipients"][0]["rule"], "no_positive_entries");
    assert_eq!(json["size"]["max_message_bytes"], CAP);
    assert_eq!(json["accepted"], true);
    assert_eq!(serde_json::to_value(ConnectRule::Disabled).ok(), Some(Value::from("disabled")));
    assert_eq!(
        serde_json::to_value(ConnectRule::Client(ClientRule::AnyClientBecauseDomainsSet)).ok(),
        Some(Value::from("any_client_because_domains_set"))
    );
}

#[test]
fn reply_lines() {
    assert_eq!(reply_recipient_rejected("x@y").line(), "550 5.7.1 <x@y>: recipient domain not accepted by this sensor");
    assert_eq!(reply_recipient_rejected("<x@y>").to_string(), reply_recipient_rejected("x@y").line());
    assert_eq!(reply_recipient_accepted("x@y").line(), "250 2.1.5 <x@y>: recipient ok");
    assert_eq!(reply_disabled().code, 421);
    assert_eq!(reply_disabled().enhanced, "4.3.2");
    assert_eq!(
        reply_client_rejected(ip("::ffff:192.0.2.1")).line(),
        "554 5.7.1 client 192.0.2.1 is not allowed to send mail to this sensor"
    );
    assert_eq!(reply_client_accepted().line(), "220 2.0.0 ready");
    assert_eq!(
        reply_size_rejected(1024).line(),
        "552 5.3.4 message size exceeds fixed maximum message size of 1024 bytes"
    );
    assert_eq!((reply_size_accepted().code, reply_size_accepted().enhanced), (250, "2.1.0"));
    // A recipient from JSON cannot smuggle a second reply line.
    let line = reply_recipient_rejected("x@y\r\n250 ok").line();
    assert!(!line.contains('\r') && !line.contains('\n'), "{line:?}");
    let long = reply_recipient_rejected(&format!("{}@example.com", "a".repeat(10_000))).line();
    assert!(long.len() < 400, "{}", long.len());
}

// ---------------------------------------------------------------------------------------
// No input makes anything panic.

fn odd_inputs() -> Vec<String> {
    let mut inputs = strings(&[
        "",
        " ",
        "!",
        "!!",
        "!!x",
        "!!x.example",
        "! ",
        "@",
        "@@",
        "x@",
        "@x",
        "[",
        "]",
        "[]",
        "[::1",
        "::1]",
        "*",
        "*.",
        "*.*",
        "**.example",
        ".",
        "..",
        "...",
        "-",
        "-.-",
        "xn--",
        "xn--.example",
        "xn--zz",
        "xn--a.example",
        "a.xn--.com",
        "1.2.3.4/",
        "/24",
        "/",
        "//",
        "1.2.3.4//24",
        "::ffff:1.2.3.4",
        "::ffff:1.2.3.4/",
        "::ffff:1.2.3.4/95",
        "::ffff:1.2.3.4/96",
        "::ffff:1.2.3.4/200",
        "::",
        "::/0",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "1.2.3.4:",
        ":1",
        ":",
        ":::",
        "1.2.3.4/-1",
        "1.2.3.4/0x10",
        "1.2.3.4/1e3",
        "1.2.3",
        "1.2.3.4.5",
        "\u{0}",
        "\u{FFFD}",
        "\u{200D}",
        "\u{0301}a.example",
        "a\u{0301}.example",
        "\u{3002}",
        "example\u{3002}\u{3002}com",
        "ＥＸＡＭＰＬＥ．ＣＯＭ",
        "\u{FF20}example.com",
        "\u{AD}",
        "\u{AD}\u{AD}.example",
        "🦀.example",
        "\u{202E}moc.elpmaxe",
        "ß",
        "İ.example",
        "<",
        ">",
        "<>",
        "<@>",
        "\"@\"@",
        "x@[",
        "x@]",
        "fe80::1%",
        "%",
        "1.2.3.4%eth0",
        "!*.!",
        "!@",
        "![::1]:25",
    ]);
    inputs.push("a".repeat(1_000_000));
    inputs.push("*.".repeat(100_000));
    inputs.push("@".repeat(100_000));
    inputs.push("!".repeat(100_000));
    inputs.push("1.".repeat(100_000));
    inputs.push("a.".repeat(100_000));
    inputs.push(format!("{}.example", "ü".repeat(100_000)));
    inputs.push(format!("x@{}", "a.".repeat(100_000)));
    inputs.push(format!("1.2.3.4/{}", "9".repeat(10_000)));
    inputs.push(":".repeat(10_000));
    inputs.push("\u{AD}".repeat(10_000) + "a.example");
    // Deterministic pseudo-random strings over an alphabet of troublemakers.
    let alphabet: Vec<char> = "ab9.-!*@[]:/%_ \t\u{0}üß\u{3002}\u{AD}\u{200D}\u{FF0E}xn".chars().collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..3_000 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 24) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        inputs.push(text);
    }
    inputs
}

#[test]
fn no_panic_on_odd_input() {
    let inputs = odd_inputs();
    let domain_rules = domains(&["example.com", "!hr.example.com"]);
    let client_rules = clients(&["10.0.0.0/8", "!10.1.0.0/16"]);
    for input in &inputs {
        let one = std::slice::from_ref(input);
        if let Err(violations) = DomainRules::parse(one) {
            assert!(violations.iter().all(|v| v.message.len() < 1_000), "long message for {:.40}", input);
        }
        if let Err(violations) = ClientRules::parse(one) {
            assert!(violations.iter().all(|v| v.message.len() < 1_000), "long message for {:.40}", input);
        }
        let _ = domain_rules.evaluate(input);
        let _ = domain_rules.evaluate(&format!("x@{input}"));
        let _ = reply_recipient_rejected(input).line();
        let _ = SizeLimitDraft { unlimited: None, value: Some(1), unit: Some(input.clone()) }.parse(CAP);
    }
    // The whole lot at once: every entry reported, nothing else.
    let violations = DomainRules::parse(&inputs).err().unwrap_or_default();
    assert!(!violations.is_empty());
    let _ = ClientRules::parse(&inputs);
    for peer in ["0.0.0.0", "255.255.255.255", "::", "::ffff:0.0.0.0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
        for network in [None, Some(net("0.0.0.0/0")), Some(net("::/0")), Some(net("::ffff:0.0.0.0/96"))] {
            let _ = client_rules.evaluate(ip(peer), false, network);
            let _ = ClientRules::default().evaluate(ip(peer), false, network);
        }
    }
    for value in [i64::MIN, -1, 0, 1, i64::MAX] {
        for cap in [0, 1, CAP, u64::MAX] {
            let _ = limited(value, "GB").parse(cap);
        }
    }
}

#[test]
fn odd_entries_that_are_valid_are_stored_canonically() {
    assert_eq!(domains(&["ＥＸＡＭＰＬＥ．ＣＯＭ"]).entries(), ["example.com"]);
    assert_eq!(clients(&["255.255.255.255/32"]).entries(), ["255.255.255.255/32"]);
    assert_eq!(clients(&["::"]).entries(), ["::"]);
}
