//! Test harness: the real server on a random loopback port, against a fresh database per test
//! (PostgreSQL cloned from a migrated template, or a new SQLite file), called over HTTP.
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use mailsensor::auth::{AuthConfig, Claims, KeySet, KeySpec, Role};
use mailsensor::server::{self, ServerParts};
use mailsensor::store;
use migration::{Migrator, MigratorTrait};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ISSUER: &str = "mailsensor-test";
pub const AUDIENCE: &str = "mailsensor-api-test";
/// TEST ONLY: protects nothing outside these tests.
pub const TEST_HS256_SECRET: &str = "test-only-secret-0123456789abcdef0123456789abcdef";
pub const PLATFORM_CAP: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn key_spec(kid: &str, alg: &str, file: &str) -> KeySpec {
    format!("{kid}={alg}:{}", fixture(&format!("keys/{file}")).display()).parse().expect("valid key spec")
}

/// The verification keys the test server trusts.
pub fn server_auth() -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        hs256_secret: Some(TEST_HS256_SECRET.into()),
        public_keys: vec![
            key_spec("rsa-1", "RS256", "rsa-public.pem"),
            key_spec("ec-1", "ES256", "ec-public.pem"),
            key_spec("ed-1", "EdDSA", "ed-public.pem"),
        ],
        signing_key: None,
    }
}

fn admin_url() -> String {
    std::env::var("MAILSENSOR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The same PostgreSQL database, logged in as the role the server runs as (created by the
/// row-level security migration); SQLite URLs are returned as they are.
pub fn as_api_role(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("postgres") => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://mailsensor_api@{host}")
        }
        _ => url.to_owned(),
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

async fn admin_connection() -> DatabaseConnection {
    let url = admin_url();
    Database::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {url}: {e}\n\
             Start it (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or point \
             MAILSENSOR_TEST_DATABASE_URL at a server where this user may CREATE DATABASE."
        )
    })
}

/// A migrated template database, built once per migration set and cloned for each test.
fn postgres_template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        // Its own thread and runtime: the template outlives any one test's runtime.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
                let hash = names
                    .join(",")
                    .bytes()
                    .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
                let template = format!("mailsensor_tpl_{hash:016x}");
                let admin = admin_connection().await;
                admin.execute_unprepared("SELECT pg_advisory_lock(7301)").await.unwrap();
                let exists = admin
                    .query_one_raw(sea_orm::Statement::from_string(
                        admin.get_database_backend(),
                        format!("SELECT 1 FROM pg_database WHERE datname = '{template}'"),
                    ))
                    .await
                    .unwrap()
                    .is_some();
                if !exists {
                    let building = format!("{template}_building");
                    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {building}")).await.unwrap();
                    admin.execute_unprepared(&format!("CREATE DATABASE {building}")).await.unwrap();
                    let db = Database::connect(with_database(&admin_url(), &building)).await.unwrap();
                    Migrator::up(&db, None).await.expect("migrations apply on PostgreSQL");
                    db.close().await.unwrap();
                    admin.execute_unprepared(&format!("ALTER DATABASE {building} RENAME TO {template}")).await.unwrap();
                }
                admin.execute_unprepared("SELECT pg_advisory_unlock(7301)").await.unwrap();
                template
            })
        })
        .join()
        .expect("template thread")
    })
}

/// An empty PostgreSQL database, not migrated at all (its URL, as the owner): for upgrade tests.
pub async fn blank_postgres_database() -> String {
    let name = format!("mailsensor_test_{}", Uuid::new_v4().simple());
    let admin = admin_connection().await;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    admin.close().await.unwrap();
    with_database(&admin_url(), &name)
}

/// A fresh, migrated, empty database URL for one test.
pub async fn fresh_database(backend: Backend) -> String {
    match backend {
        Backend::Postgres => {
            let template = postgres_template();
            let name = format!("mailsensor_test_{}", Uuid::new_v4().simple());
            let admin = admin_connection().await;
            admin.execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await.unwrap();
            admin.close().await.unwrap();
            with_database(&admin_url(), &name)
        }
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("mailsensor-test-{}.sqlite", Uuid::new_v4().simple()));
            let url = format!("sqlite://{}", path.display());
            let db = store::connect(&url, 1).await.unwrap();
            store::migrate(&db).await.expect("migrations apply on SQLite");
            db.close().await.unwrap();
            url
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// The database as its owner (migrations, direct SQL in tests).
    pub url: String,
    /// The server's own pool: on PostgreSQL it logs in as `mailsensor_api`, as in production.
    pub db: DatabaseConnection,
    /// The owner's connection, for tests that write around the API.
    pub owner: DatabaseConnection,
    pub http: reqwest::Client,
    pub keys: Arc<KeySet>,
    pub feed: Arc<mailsensor::stream::ChangeFeed>,
    pub scanner: Arc<mailsensor::scan_queue::ScanQueue>,
    pub deliverer: Arc<mailsensor::delivery::Deliverer>,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let url = fresh_database(backend).await;
    start_on(&url, "127.0.0.1:0").await
}

/// Another API replica on the same database (or the same one restarted, given its address).
pub async fn start_on(url: &str, address: &str) -> TestApp {
    start_with(url, address, mailsensor::stream::FeedOptions::default()).await
}

pub async fn start_with(url: &str, address: &str, feed: mailsensor::stream::FeedOptions) -> TestApp {
    start_configured(url, address, |parts| parts.feed = feed).await
}

/// A replica whose parts `configure` adjusts (feed options, scan workers, …).
pub async fn start_configured(url: &str, address: &str, configure: impl FnOnce(&mut ServerParts)) -> TestApp {
    // The server's warnings and errors go to the test's output, so a failing test shows why.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,actix_http::h1::dispatcher=off"))
        .with_test_writer()
        .try_init();
    let db = store::connect(&as_api_role(url), 5).await.unwrap_or_else(|e| {
        panic!("cannot log in as mailsensor_api ({e}); the tests need it to log in without a password (trust)")
    });
    // SQLite has one owner and one connection: the tests share the server's.
    let owner = if url.starts_with("sqlite:") { db.clone() } else { store::connect(url, 2).await.unwrap() };
    let keys = Arc::new(KeySet::from_config(&server_auth()).unwrap());
    let listener = TcpListener::bind(address).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut parts = ServerParts::new(db.clone(), keys.clone(), PLATFORM_CAP);
    parts.workers = Some(1);
    parts.bookmark_interval = std::time::Duration::from_millis(500);
    configure(&mut parts);
    let running = server::start(listener, parts).await.unwrap();
    let handle = running.server.handle();
    tokio::spawn(running.server);
    let (feed, scanner, deliverer) = (running.feed, running.scanner, running.deliverer);
    TestApp {
        base,
        url: url.to_owned(),
        db,
        owner,
        http: reqwest::Client::new(),
        keys,
        feed,
        scanner,
        deliverer,
        handle,
    }
}

impl TestApp {
    /// Stops serving and tailing, as a crashed or restarted replica would.
    pub async fn stop(&self) {
        self.feed.shutdown();
        self.scanner.shutdown();
        self.deliverer.shutdown();
        self.handle.stop(false).await;
    }

    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real `mailsensor serve` as a process on `port`, on the database at `db_url` (already
/// migrated), logging in as `mailsensor_api` and trusting the tests' tokens.
pub fn spawn_serve(db_url: &str, port: u16) -> tokio::process::Child {
    spawn_serve_with(db_url, port, &[])
}

/// [`spawn_serve_with`] on a free port, once it answers `/readyz` with 200; with its base URL.
pub async fn serve_ready(
    http: &reqwest::Client,
    db_url: &str,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let serve = spawn_serve_with(db_url, port, env);
    let base = format!("http://127.0.0.1:{port}");
    until_ready(http, &base).await;
    (serve, base)
}

/// [`spawn_serve`] with more environment (`MAILSENSOR_*` settings).
pub fn spawn_serve_with(db_url: &str, port: u16, env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .envs(env.iter().copied())
        .args(["serve", "--no-migrate", "--listen", &format!("127.0.0.1:{port}")])
        .env("MAILSENSOR_DATABASE_URL", as_api_role(db_url))
        .env("MAILSENSOR_JWT_HS256_SECRET", TEST_HS256_SECRET)
        .env("MAILSENSOR_JWT_ISSUER", ISSUER)
        .env("MAILSENSOR_JWT_AUDIENCE", AUDIENCE)
        .env("MAILSENSOR_HTTP_WORKERS", "2")
        .env("MAILSENSOR_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts the real `mailsensor dev` on the given ports, its banner going to `stdout`.
pub fn spawn_dev(dir: &std::path::Path, api: u16, smtp: u16, stdout: std::process::Stdio) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["dev", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{api}"), "--smtp-listen", &format!("127.0.0.1:{smtp}")])
        .env("MAILSENSOR_LOG", "warn")
        .stdout(stdout)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

pub fn claims(sub: &str, role: Role, tenant: Option<Uuid>, node: Option<Uuid>, sensor: Option<Uuid>) -> Claims {
    Claims {
        sub: sub.into(),
        role,
        tenant,
        node,
        sensor,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        exp: now() + 600,
        iat: now(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The pointers of a 422's `errors`, in order.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl TestApp {
    pub fn token(&self, claims: &Claims) -> String {
        self.keys.mint(claims).unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None, &[]).await
    }
}

/// One tenant as the tests see it: its nodes, a sensor on each, and a token per role and node.
pub struct TenantFixture {
    pub id: Uuid,
    pub pcn: Uuid,
    pub scn: Uuid,
    pub pcn_sensor: Uuid,
    pub scn_sensor: Uuid,
}

impl TenantFixture {
    pub fn sensor_path(&self, sensor: Uuid) -> String {
        format!("/v1/tenants/{}/sensors/{sensor}", self.id)
    }

    pub fn settings_path(&self, sensor: Uuid) -> String {
        format!("{}/smtp-integration", self.sensor_path(sensor))
    }
}

/// Two tenants (A and B), each with a PCN, an SCN and a sensor on each, created through the API.
pub struct World {
    pub app: TestApp,
    pub operator: String,
    pub a: TenantFixture,
    pub b: TenantFixture,
}

impl World {
    pub fn member(&self, tenant: &TenantFixture, role: Role, node: Uuid) -> String {
        self.app.token(&claims(&format!("{role:?}@{node}"), role, Some(tenant.id), Some(node), None))
    }

    pub fn admin_pcn(&self) -> String {
        self.member(&self.a, Role::Administrator, self.a.pcn)
    }

    pub fn sensor_token(&self, tenant: &TenantFixture, sensor: Uuid) -> String {
        self.app.token(&claims("worker", Role::Sensor, Some(tenant.id), None, Some(sensor)))
    }
}

pub async fn create_tenant(app: &TestApp, operator: &str, name: &str) -> TenantFixture {
    let created = app.post("/v1/tenants", operator, json!({"name": name})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id: Uuid = serde_json::from_value(created.body["id"].clone()).unwrap();
    let pcn: Uuid = serde_json::from_value(created.body["pcn"]["id"].clone()).unwrap();
    let scn = app.post(&format!("/v1/tenants/{id}/nodes"), operator, json!({"name": "SCN"})).await;
    assert_eq!(scn.status, StatusCode::CREATED, "{:?}", scn.body);
    let scn: Uuid = serde_json::from_value(scn.body["id"].clone()).unwrap();
    let admin = app.token(&claims("setup", Role::Administrator, Some(id), Some(pcn), None));
    let sensor = async |name: &str, node: Uuid| -> Uuid {
        let r = app.post(&format!("/v1/tenants/{id}/sensors"), &admin, json!({"name": name, "node_id": node})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        serde_json::from_value(r.body["id"].clone()).unwrap()
    };
    let pcn_sensor = sensor("pcn-sensor", pcn).await;
    let scn_sensor = sensor("scn-sensor", scn).await;
    TenantFixture { id, pcn, scn, pcn_sensor, scn_sensor }
}

pub async fn world(backend: Backend) -> World {
    world_configured(backend, |_| {}).await
}

/// A world whose server's parts `configure` adjusts (engines, feed options, …).
pub async fn world_configured(backend: Backend, configure: impl FnOnce(&mut ServerParts)) -> World {
    let url = fresh_database(backend).await;
    world_on(start_configured(&url, "127.0.0.1:0", configure).await).await
}

/// Tenants A and B on a running `app`.
pub async fn world_on(app: TestApp) -> World {
    let operator = app.token(&claims("olga", Role::PlatformOperator, None, None, None));
    let a = create_tenant(&app, &operator, "Tenant A").await;
    let b = create_tenant(&app, &operator, "Tenant B").await;
    World { app, operator, a, b }
}

/// A hand-off to `base` of `message` (the raw bytes after the envelope line) from one client
/// (192.0.2.1, a@example.org to b@example.com, worker w1), with `token` and `key`.
pub fn hand_off_request(
    http: &reqwest::Client,
    base: &str,
    sensor: Uuid,
    token: &str,
    key: &str,
    message: &str,
) -> reqwest::RequestBuilder {
    let envelope = json!({"client_ip": "192.0.2.1", "helo": "mx", "mail_from": "a@example.org",
        "rcpt_to": ["b@example.com"], "tls": false, "worker": "w1"});
    http.post(format!("{base}/v1/sensors/{sensor}/messages"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.mailsensor.handoff")
        .header("idempotency-key", key)
        .body(format!("{envelope}\n{message}"))
}

/// A message received by `sensor` (handed off with its own token), so message ids are real.
pub async fn message_of(w: &World, tenant: &TenantFixture, sensor: Uuid) -> Uuid {
    message_with(w, tenant, sensor, "Subject: x\r\n\r\nx\r\n").await
}

/// Hands `raw` off as `sensor` of `tenant` (the worker's path) and returns the stored id.
pub async fn message_with(w: &World, tenant: &TenantFixture, sensor: Uuid, raw: &str) -> Uuid {
    let token = w.sensor_token(tenant, sensor);
    let key = Uuid::new_v4().to_string();
    let r = hand_off_request(&w.app.http, &w.app.base, sensor, &token, &key, raw).send().await.unwrap();
    assert_eq!(r.status(), 201);
    serde_json::from_value(r.json::<Value>().await.unwrap()["id"].clone()).unwrap()
}

/// Runs a test body once against PostgreSQL and once against SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
        }
    )* };
}

/// Waits until the server at `base` answers `/readyz` with 200 (at most 20 s).
pub async fn until_ready(http: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "{base} did not become ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A fresh, empty folder under the system's temporary folder.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsensor-test-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
