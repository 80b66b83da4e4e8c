//! Token failures: every one answers 401 with `WWW-Authenticate`, and nothing else is revealed.
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mailsensor::auth::{AuthConfig, KeySet, Role};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn pem(file: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("keys/{file}"))).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, None, claims, &EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes()))
}

async fn expect_401(w: &World, token: &str, why: &str) {
    let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), token).await;
    assert_eq!(r.status, 401, "{why}: {:?}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("{why}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer realm=\"mailsensor\""), "{why}: {challenge}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{why}");
}

async fn token_failures(backend: Backend) {
    let w = world(backend).await;
    let good = json!({
        "sub": "alice", "role": "administrator", "tenant": w.a.id, "node": w.a.pcn,
        "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()
    });
    // The baseline is accepted, so each failure below is down to the one thing changed.
    let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &hs(&good)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(key);
        c
    };
    expect_401(&w, &hs(&with("exp", json!(now() - 3600))), "expired").await;
    expect_401(&w, &hs(&with("aud", json!("someone-else"))), "wrong aud").await;
    // RFC 7519 allows `aud` as an array; identity providers emit it. Ours among them: accepted.
    let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &hs(&with("aud", json!(["portal", AUDIENCE])))).await;
    assert_eq!(r.status, 200, "an aud array holding the audience: {:?}", r.body);
    expect_401(&w, &hs(&with("aud", json!(["portal", "someone-else"]))), "an aud array without it").await;
    expect_401(&w, &hs(&with("aud", json!([]))), "an empty aud array").await;
    expect_401(&w, &hs(&with("iss", json!("evil"))), "wrong iss").await;
    for claim in ["exp", "iss", "aud", "sub", "role", "tenant", "node"] {
        expect_401(&w, &hs(&without(claim)), &format!("missing {claim}")).await;
    }
    expect_401(&w, &hs(&with("role", json!("superuser"))), "unknown role").await;
    let sensor_without_sensor = json!({
        "sub": "w", "role": "sensor", "tenant": w.a.id, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()
    });
    expect_401(&w, &hs(&sensor_without_sensor), "sensor role without sensor claim").await;

    // alg "none": a header and claims with an empty signature.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(good.to_string().as_bytes()));
    expect_401(&w, &none, "alg none").await;
    let none_kid = format!("{}.{}.", b64(br#"{"alg":"none","kid":"rsa-1"}"#), b64(good.to_string().as_bytes()));
    expect_401(&w, &none_kid, "alg none with a kid").await;

    // Tampered: claims changed after signing.
    let token = hs(&good);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with("role", json!("platform_operator"));
    expect_401(&w, &format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2]), "tampered").await;
    expect_401(&w, "not-a-token", "garbage").await;
    expect_401(
        &w,
        &sign(Algorithm::HS256, None, &good, &EncodingKey::from_secret(b"another-secret-another-secret-xx")),
        "wrong secret",
    )
    .await;

    // HS/RS confusion: an HS256 token whose secret is the server's RSA *public* key.
    let confused = EncodingKey::from_secret(&pem("rsa-public.pem"));
    expect_401(&w, &sign(Algorithm::HS256, Some("rsa-1"), &good, &confused), "HS256 keyed with the RSA public key")
        .await;
    // The right private key under a kid that names another algorithm's key.
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).unwrap();
    expect_401(&w, &sign(Algorithm::RS256, Some("ec-1"), &good, &rsa), "RS256 token naming the EC key").await;
    expect_401(&w, &sign(Algorithm::RS256, Some("unknown"), &good, &rsa), "unknown kid").await;
    expect_401(&w, &sign(Algorithm::RS256, None, &good, &rsa), "RS256 without kid").await;
    // A key the server does not trust, under a trusted kid.
    let rsa2 = EncodingKey::from_rsa_pem(&pem("rsa2-private.pem")).unwrap();
    expect_401(&w, &sign(Algorithm::RS256, Some("rsa-1"), &good, &rsa2), "untrusted RSA key").await;

    // No token, or not a bearer token.
    let r = w.app.call(reqwest::Method::GET, &w.a.settings_path(w.a.pcn_sensor), None, None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"mailsensor\""));
    let r = w
        .app
        .call(reqwest::Method::GET, &w.a.settings_path(w.a.pcn_sensor), None, None, &[("authorization", "Basic YTpi")])
        .await;
    assert_eq!(r.status, 401);

    // A sensor's token outlives the sensor: once it is deleted, the token signs nobody in.
    let sensor = w.a.scn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let report = format!("/v1/sensors/{sensor}/workers/w1");
    assert_eq!(w.app.put(&report, &token, json!({"version": "1"})).await.status, 200);
    assert_eq!(w.app.delete(&w.a.sensor_path(sensor), &w.admin_pcn()).await.status, 204);
    let r = w.app.put(&report, &token, json!({"version": "1"})).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(
        r.header("www-authenticate").is_some_and(|c| c.contains("invalid_token")),
        "{:?}",
        r.header("www-authenticate")
    );
    assert!(r.body["detail"].as_str().unwrap_or("").contains("no longer exists"), "{:?}", r.body);
    let r = w.app.get(&format!("/v1/tenants/{}", w.a.id), &token).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    // Its config stream still answers, so a worker that was away learns why it must stop.
    let r = w.app.get(&format!("/v1/sensors/{sensor}/config-stream"), &token).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    // The hand-off looks the sensor up in the statements that store, for a message stored whole
    // and for one streamed in chunks, and refuses the token alike; nothing is stored.
    for body_bytes in [10, 600 * 1024] {
        let key = uuid::Uuid::new_v4().to_string();
        let message = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(body_bytes));
        let sent = hand_off_request(&w.app.http, &w.app.base, sensor, &token, &key, &message).send().await;
        // The large one is refused before its last bytes are read: the client may see the
        // connection close instead of the answer. Either way nothing is stored (checked below).
        let Ok(r) = sent else {
            assert!(body_bytes > 256 * 1024, "{sent:?}");
            continue;
        };
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 401, "{body_bytes}-byte body: {body:?}");
        assert!(body["detail"].as_str().unwrap_or("").contains("no longer exists"), "{body:?}");
    }
    let r = w.app.get(&format!("/v1/tenants/{}/messages", w.a.id), &w.admin_pcn()).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0), "{:?}", r.body);

    // And each configured asymmetric algorithm does work.
    let ec = EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(&pem("ed-private.pem")).unwrap();
    for (alg, kid, key) in
        [(Algorithm::RS256, "rsa-1", &rsa), (Algorithm::ES256, "ec-1", &ec), (Algorithm::EdDSA, "ed-1", &ed)]
    {
        let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &sign(alg, Some(kid), &good, key)).await;
        assert_eq!(r.status, 200, "{alg:?}: {:?}", r.body);
    }
}

/// Rotation: a server trusting the old and new key accepts both; once the old key is removed,
/// tokens signed with it fail.
#[test]
fn key_rotation_by_kid() {
    let config = |keys: Vec<mailsensor::auth::KeySpec>| AuthConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        hs256_secret: None,
        public_keys: keys,
        signing_key: None,
    };
    let signer = |kid: &str, file: &str| {
        KeySet::from_config(&AuthConfig {
            signing_key: Some(key_spec(kid, "RS256", file)),
            ..config(vec![key_spec(kid, "RS256", &file.replace("private", "public"))])
        })
        .unwrap()
    };
    let claims = claims("alice", Role::Administrator, Some(uuid::Uuid::now_v7()), Some(uuid::Uuid::now_v7()), None);
    let old = signer("2026-10", "rsa-private.pem").mint(&claims).unwrap();
    let new = signer("2026-11", "rsa2-private.pem").mint(&claims).unwrap();
    let both = KeySet::from_config(&config(vec![
        key_spec("2026-10", "RS256", "rsa-public.pem"),
        key_spec("2026-11", "RS256", "rsa2-public.pem"),
    ]))
    .unwrap();
    assert!(both.verify(&old).is_ok());
    assert!(both.verify(&new).is_ok());
    let rotated = KeySet::from_config(&config(vec![key_spec("2026-11", "RS256", "rsa2-public.pem")])).unwrap();
    assert!(rotated.verify(&old).is_err());
    assert!(rotated.verify(&new).is_ok());
}

#[test]
fn key_configuration_errors_are_clear() {
    let base = AuthConfig { issuer: ISSUER.into(), audience: AUDIENCE.into(), ..Default::default() };
    assert!(KeySet::from_config(&base).err().unwrap().to_string().contains("MAILSENSOR_JWT_HS256_SECRET"));
    let short = AuthConfig { hs256_secret: Some("short".into()), ..base.clone() };
    assert!(KeySet::from_config(&short).err().unwrap().to_string().contains("32 bytes"));
    let wrong_kind = AuthConfig { public_keys: vec![key_spec("k", "ES256", "rsa-public.pem")], ..base.clone() };
    assert!(KeySet::from_config(&wrong_kind).is_err());
    assert!("k=HS256:/x".parse::<mailsensor::auth::KeySpec>().is_err());
}

on_both_backends!(token_failures);
