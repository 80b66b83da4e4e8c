//! `mailsensor token` run as an operator would: it refuses claims the role needs or forbids, naming
//! the flag, and says which key it lacks.
use std::process::Command;

// Test-only secret; never used outside this test.
const SECRET: &str = "test-only-secret-for-token-cli-0123456789";

fn token(args: &[&str], secret: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsensor"));
    command.arg("token").args(args).env_remove("MAILSENSOR_JWT_HS256_SECRET").env_remove("MAILSENSOR_JWT_SIGNING_KEY");
    if let Some(secret) = secret {
        command.env("MAILSENSOR_JWT_HS256_SECRET", secret);
    }
    let out = command.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_claims_the_role_needs_or_forbids() {
    let id = "0193a1b2-0000-7000-8000-000000000001";
    let cases: &[(&[&str], &[&str])] = &[
        (&["--role", "sensor", "--sub", "w1"], &["needs --tenant", "needs --sensor"]),
        (&["--role", "sensor", "--sub", "w1", "--tenant", id, "--sensor", id, "--node", id], &["takes no --node"]),
        (&["--role", "platform_operator", "--sub", "op", "--tenant", id], &["takes no --tenant"]),
        (&["--role", "administrator", "--sub", "alice", "--tenant", id], &["needs --node"]),
        (
            &["--role", "security_auditor", "--sub", "a", "--tenant", id, "--node", id, "--sensor", id],
            &["takes no --sensor"],
        ),
    ];
    for (args, expected) in cases {
        let (ok, stdout, stderr) = token(args, Some(SECRET));
        assert!(!ok && stdout.is_empty(), "{args:?} minted a token: {stdout}");
        for needle in *expected {
            assert!(stderr.contains(needle), "{args:?}: {stderr:?} does not say {needle:?}");
        }
    }
}

#[test]
fn mints_what_the_role_needs() {
    let id = "0193a1b2-0000-7000-8000-000000000001";
    for args in [
        &["--role", "sensor", "--sub", "w1", "--tenant", id, "--sensor", id][..],
        &["--role", "platform_operator", "--sub", "op"][..],
        &["--role", "administrator", "--sub", "alice", "--tenant", id, "--node", id][..],
    ] {
        let (ok, stdout, stderr) = token(args, Some(SECRET));
        assert!(ok, "{args:?}: {stderr}");
        assert_eq!(stdout.trim().split('.').count(), 3, "{args:?} printed {stdout:?}");
    }
}

#[test]
fn without_a_key_names_the_signing_key() {
    let (ok, _, stderr) = token(&["--role", "platform_operator", "--sub", "op"], None);
    assert!(!ok);
    assert!(stderr.contains("no signing key configured") && stderr.contains("MAILSENSOR_JWT_SIGNING_KEY"), "{stderr}");
    assert!(!stderr.contains("verification"), "{stderr}");
}

/// The production set-up of the operator's guide: a key pair made with `openssl`, the private half
/// given to `mailsensor token` alone (the public half is the API's), and the token it mints
/// verifies against the public half.
#[test]
fn mints_with_a_signing_key_alone() {
    let dir = std::env::temp_dir().join(format!("mailsensor-token-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (private, public) = (dir.join("k1.pem"), dir.join("k1.pub.pem"));
    for args in [
        vec!["genpkey", "-algorithm", "ed25519", "-out", private.to_str().unwrap()],
        vec!["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()],
    ] {
        let status = Command::new("openssl").args(&args).status().expect("openssl (Debian package openssl) runs");
        assert!(status.success(), "openssl {args:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["token", "--role", "platform_operator", "--sub", "ops"])
        .env_remove("MAILSENSOR_JWT_HS256_SECRET")
        .env_remove("MAILSENSOR_JWT_PUBLIC_KEYS")
        .env("MAILSENSOR_JWT_SIGNING_KEY", format!("k1=EdDSA:{}", private.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let token = String::from_utf8(out.stdout).unwrap();
    let verifier = mailsensor::auth::KeySet::from_config(&mailsensor::auth::AuthConfig {
        issuer: "mailsensor".into(),
        audience: "mailsensor-api".into(),
        public_keys: vec![format!("k1=EdDSA:{}", public.display()).parse().unwrap()],
        ..Default::default()
    })
    .unwrap();
    let principal = verifier.verify(token.trim()).expect("the API's public key verifies it");
    assert!(matches!(&principal, mailsensor::auth::Principal::Operator { sub } if sub == "ops"), "{principal:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
