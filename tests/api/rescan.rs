//! Rescans: a stored message goes back through the engines with the rules of the moment; its
//! earlier result is kept; only the senior security officer in scope may ask for it; audited.
use std::time::{Duration, Instant};

use mailsensor::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

fn message_path(w: &World, id: Uuid) -> String {
    format!("/v1/tenants/{}/messages/{id}", w.a.id)
}

/// The message once it is no longer pending, as read on `base`.
async fn scanned(http: &reqwest::Client, base: &str, w: &World, id: Uuid) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("{base}{}", message_path(w, id));
        let m: Value = http.get(url).bearer_auth(w.admin_pcn()).send().await.unwrap().json().await.unwrap();
        if m["verdict"] != "pending" {
            return m;
        }
        assert!(Instant::now() < deadline, "message {id} still pending after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rescan_roles_and_scope(backend: Backend) {
    let w = world(backend).await;
    let id = message_of(&w, &w.a, w.a.pcn_sensor).await;
    let first = scanned(&w.app.http, &w.app.base, &w, id).await;
    assert_eq!(first["verdict"], "clean");
    assert!(first["scanned_at"].is_string(), "{first}");
    assert_eq!(first["earlier_scans"], json!([]));
    let path = format!("{}/rescan", message_path(&w, id));
    for (token, expected, who) in [
        (w.member(&w.a, Role::SecurityOfficer, w.a.pcn), 403, "an officer"),
        (w.member(&w.a, Role::SecurityAuditor, w.a.pcn), 403, "an auditor"),
        (w.admin_pcn(), 403, "an administrator"),
        (
            w.member(&w.a, Role::SeniorSecurityOfficer, w.a.scn),
            404,
            "a senior officer at the SCN (a PCN sensor's message)",
        ),
        (w.member(&w.b, Role::SeniorSecurityOfficer, w.b.pcn), 404, "another tenant's senior officer"),
        (w.operator.clone(), 404, "the operator"),
        (w.sensor_token(&w.a, w.a.pcn_sensor), 404, "the sensor itself"),
    ] {
        let r = w.app.post(&path, &token, json!({})).await;
        assert_eq!(r.status, expected, "{who}: {:?}", r.body);
    }
    let missing = format!("{}/rescan", message_path(&w, Uuid::now_v7()));
    let senior = w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn);
    assert_eq!(w.app.post(&missing, &senior, json!({})).await.status, 404);
    // Nothing above changed it.
    assert_eq!(w.app.get(&message_path(&w, id), &w.admin_pcn()).await.body["earlier_scans"], json!([]));

    let r = w.app.post(&path, &senior, json!({})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["id"], id.to_string());
    // Pending now, or already scanned again by the time the answer is read; never lost.
    assert_eq!(r.body["earlier_scans"][0]["verdict"], "clean");
    assert_eq!(r.body["earlier_scans"][0]["scanned_at"], first["scanned_at"]);
    let again = scanned(&w.app.http, &w.app.base, &w, id).await;
    assert_eq!(again["verdict"], "clean");
    assert_eq!(again["earlier_scans"].as_array().unwrap().len(), 1);

    // Audited, with who asked.
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events", w.a.id), &w.admin_pcn()).await;
    let events = audit.body["items"].as_array().unwrap();
    let rescan = events.iter().find(|e| e["action"] == "message.rescan").expect("an audit event");
    assert_eq!(rescan["target"], json!({"type": "message", "id": id.to_string()}));
    assert_eq!(rescan["actor"]["role"], "senior_security_officer");
    assert_eq!(
        (rescan["before"]["verdict"].as_str(), rescan["after"]["verdict"].as_str()),
        (Some("clean"), Some("pending"))
    );
}

/// A message scanned clean by a replica without rules is rescanned by one given a rule that
/// matches it (`serve --yara-rules`): malicious now, the clean result kept beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_applies_the_rules_of_the_moment() {
    let w = world(Backend::Postgres).await;
    w.app.stop().await;
    let http = reqwest::Client::new();
    let (mut before, base) = serve_ready(&http, &w.app.url, &[]).await;
    let sensor = w.a.pcn_sensor;
    let message = "Subject: invoice\r\n\r\nPlease pay reference ACME-CAMPAIGN-7 today.\r\n";
    let r = hand_off_request(&http, &base, sensor, &w.sensor_token(&w.a, sensor), "campaign-1", message)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id: Uuid = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(scanned(&http, &base, &w, id).await["verdict"], "clean");
    before.kill().await.unwrap();

    // The campaign becomes known: a replica with a rule for it.
    let dir = fresh_dir("rules");
    std::fs::write(
        dir.join("campaigns.yar"),
        "rule acme_campaign : campaign { meta: severity = \"malicious\" strings: $r = \"ACME-CAMPAIGN-7\" condition: $r }\n",
    )
    .unwrap();
    let (_after, base) = serve_ready(&http, &w.app.url, &[("MAILSENSOR_YARA_RULES", dir.to_str().unwrap())]).await;
    let senior = w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn);
    let r = http.post(format!("{base}{}/rescan", message_path(&w, id))).bearer_auth(&senior).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let now = scanned(&http, &base, &w, id).await;
    assert_eq!(now["verdict"], "malicious", "{now}");
    let yara: Vec<&Value> = now["detections"].as_array().unwrap().iter().filter(|d| d["engine"] == "yara").collect();
    assert_eq!(yara.len(), 1, "{now}");
    assert_eq!((yara[0]["rule"].as_str(), yara[0]["namespace"].as_str()), (Some("acme_campaign"), Some("campaigns")));
    assert_eq!(yara[0]["tags"], json!(["campaign"]));
    assert_eq!(now["earlier_scans"].as_array().unwrap().len(), 1);
    assert_eq!(now["earlier_scans"][0]["verdict"], "clean");
    // The earlier scan ran the built-in checks alone; this one YARA too, with the campaign rule.
    let engines = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|e| e["engine"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(engines(&now["earlier_scans"][0]["engines"]), ["builtin"]);
    assert_eq!(engines(&now["engines"]), ["builtin", "yara"]);
    assert!(now["engines"][1]["database"].as_str().unwrap().starts_with("1 rule, sha256 "), "{now}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Rules that do not compile stop `serve` at start, naming the file, line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_do_not_compile_stop_the_start_and_say_where() {
    let dir = fresh_dir("rules");
    std::fs::write(dir.join("broken.yar"), "rule ok { condition: true }\nrule bad { condition: $nope }\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["dev", "--data-dir", dir.join("dev").to_str().unwrap(), "--yara-rules", dir.to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--smtp-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let broken = dir.join("broken.yar");
    assert!(stderr.contains(&format!("{}:2:", broken.display())), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

on_both_backends!(rescan_roles_and_scope);
