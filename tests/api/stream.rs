//! The config change stream: propagation across replicas, resume without gap or duplicate,
//! restarts, retention, lagging replicas, access, long-poll, acknowledgements and write-and-wait.
use std::pin::Pin;
use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use mailsensor::auth::Role;
use mailsensor::sensor::follower::{Applied, FollowOptions, Follower};
use mailsensor::wire::EventKind;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

type Events = Pin<Box<dyn Stream<Item = Result<Event, eventsource_stream::EventStreamError<reqwest::Error>>> + Send>>;

/// A raw SSE connection, read event by event.
struct Sse {
    status: u16,
    headers: reqwest::header::HeaderMap,
    events: Option<Events>,
}

impl Sse {
    async fn open(app: &TestApp, sensor: Uuid, token: &str, last_id: Option<&str>) -> Sse {
        let mut request = app.http.get(format!("{}/v1/sensors/{sensor}/config-stream", app.base)).bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let events = (status == 200).then(|| Box::pin(response.bytes_stream().eventsource()) as Events);
        Sse { status, headers, events }
    }

    /// The next event that is not a bookmark (bookmarks keep coming, so the deadline is for all).
    async fn next(&mut self) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.as_mut().unwrap().next())
                .await
                .expect("an event other than a bookmark within 10 s")
                .expect("the stream is open")
                .expect("a well-formed event");
            if event.event != "bookmark" {
                return event;
            }
        }
    }

    /// Asserts nothing but bookmarks arrive for `quiet`.
    async fn expect_quiet(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, self.events.as_mut().unwrap().next()).await {
            assert_eq!(event.event, "bookmark", "unexpected {event:?}");
        }
    }
}

fn data(e: &Event) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

fn rev_of(id: &str) -> i64 {
    id.rsplit_once(':').unwrap().1.parse().unwrap()
}

async fn set_domains(app: &TestApp, w: &World, sensor: Uuid, domain: &str) -> i64 {
    let r = app.patch(&w.a.settings_path(sensor), &w.admin_pcn(), json!({"destination_domains": [domain]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["revision"].as_i64().unwrap()
}

/// Waits until the follower has applied settings revision `revision`.
async fn until_applied(follower: &Follower, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower.in_force().map(|f| f.revision()) != Some(revision) {
        assert!(Instant::now() < deadline, "revision {revision} not applied; have {:?}", follower.in_force());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn snapshot_then_changes_then_resume(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&w.app, sensor, &token, None).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    let reset = sse.next().await;
    assert_eq!(reset.event, "reset");
    let snapshot = sse.next().await;
    assert_eq!(snapshot.event, "snapshot");
    let config = data(&snapshot);
    assert_eq!(config["sensor_id"], sensor.to_string());
    assert_eq!(config["revision"], 1);
    assert_eq!(config["enabled"], false);
    assert_eq!(config["max_message_bytes"], PLATFORM_CAP);
    let synced = sse.next().await;
    assert_eq!(synced.event, "synced");
    let start = synced.id.clone();

    // Changes to this sensor arrive in order; changes to others do not arrive at all.
    let r1 = set_domains(&w.app, &w, sensor, "one.example").await;
    set_domains(&w.app, &w, w.a.scn_sensor, "other.example").await;
    let r2 = set_domains(&w.app, &w, sensor, "two.example").await;
    let first = sse.next().await;
    let second = sse.next().await;
    assert_eq!((first.event.as_str(), data(&first)["revision"].as_i64()), ("upsert", Some(r1)));
    assert_eq!(data(&first)["destination_domains"], json!(["one.example"]));
    assert_eq!(data(&second)["revision"].as_i64(), Some(r2));
    assert!(rev_of(&second.id) > rev_of(&first.id) && rev_of(&first.id) > rev_of(&start));
    drop(sse);

    // Resume from the first change: exactly the second one again, then new ones; no reset.
    let mut resumed = Sse::open(&w.app, sensor, &token, Some(&first.id)).await;
    let replayed = resumed.next().await;
    assert_eq!((replayed.event.as_str(), replayed.id.as_str()), ("upsert", second.id.as_str()));
    let r3 = set_domains(&w.app, &w, sensor, "three.example").await;
    assert_eq!(data(&resumed.next().await)["revision"].as_i64(), Some(r3));
    resumed.expect_quiet(Duration::from_millis(700)).await;

    // Resume from the very start replays all three, each once.
    let mut again = Sse::open(&w.app, sensor, &token, Some(&start)).await;
    for expected in [r1, r2, r3] {
        assert_eq!(data(&again.next().await)["revision"].as_i64(), Some(expected));
    }
    again.expect_quiet(Duration::from_millis(700)).await;

    // A bookmark moves the token forward while nothing changes.
    let mut idle = Sse::open(&w.app, sensor, &token, Some(&start)).await;
    for _ in 0..3 {
        idle.next().await;
    }
    let bookmark = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), idle.events.as_mut().unwrap().next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if e.event == "bookmark" {
            break e;
        }
    };
    assert!(rev_of(&bookmark.id) >= rev_of(&again_last_id(&w, sensor).await));
}

/// The id of the newest change of `sensor` (via a fresh stream's replay from the first token).
async fn again_last_id(w: &World, sensor: Uuid) -> String {
    let token = w.sensor_token(&w.a, sensor);
    let mut s = Sse::open(&w.app, sensor, &token, None).await;
    s.next().await;
    s.next().await;
    s.next().await.id
}

async fn resets(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&w.app, sensor, &token, None).await;
    sse.next().await;
    sse.next().await;
    let synced = sse.next().await.id;
    let (epoch, _) = synced.rsplit_once(':').unwrap();

    for (bad, why) in [("garbage", "not one this API issued"), ("another-epoch:1", "epoch")] {
        let mut s = Sse::open(&w.app, sensor, &token, Some(bad)).await;
        let reset = s.next().await;
        assert_eq!(reset.event, "reset");
        assert!(data(&reset)["reason"].as_str().unwrap().contains(why), "{bad}: {}", reset.data);
        assert_eq!(s.next().await.event, "snapshot");
    }

    // After compaction drops the history a token needs, it gets a fresh snapshot instead. (The
    // replica has read the change first: one that had not is `a_replica_behind_compaction_…`.)
    let latest = set_domains(&w.app, &w, sensor, "after.example").await;
    assert!(w.app.feed.wait_seen(latest, Duration::from_secs(10)).await);
    let removed = mailsensor::store::revisions::compact(&w.app.db, chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(removed > 0);
    let mut s = Sse::open(&w.app, sensor, &token, Some(&format!("{epoch}:1"))).await;
    let reset = s.next().await;
    assert_eq!(reset.event, "reset");
    assert!(data(&reset)["reason"].as_str().unwrap().contains("retained"), "{}", reset.data);
    let snapshot = s.next().await;
    assert_eq!(data(&snapshot)["revision"].as_i64(), Some(latest));
    assert_eq!(data(&snapshot)["destination_domains"], json!(["after.example"]));
    // …while a token at the head still resumes without a reset.
    let head = s.next().await.id;
    let mut s = Sse::open(&w.app, sensor, &token, Some(&head)).await;
    s.expect_quiet(Duration::from_millis(700)).await;

    // A token newer than the database itself can never be caught up with: start over.
    let mut s = Sse::open(&w.app, sensor, &token, Some(&format!("{epoch}:999999"))).await;
    let reset = s.next().await;
    assert_eq!(reset.event, "reset");
    assert!(data(&reset)["reason"].as_str().unwrap().contains("newer"), "{}", reset.data);
}

/// A replica whose tailer had not read revisions before they were compacted away (it was paused,
/// or fell behind the retention) moves past them: its subscribers start over from a snapshot, and
/// a token at the head resumes quietly again, on this replica as on any other.
async fn a_replica_behind_compaction_starts_over(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&w.app, sensor, &token, None).await;
    for _ in 0..3 {
        sse.next().await;
    }
    // What the tailer has read once it is held (it may still be finishing a read of the tenants'
    // own creation when asked to stop).
    let held = w.app.feed.hold().await;
    let before = w.app.feed.seen();
    let mut latest = 0;
    for domain in ["one.example", "two.example", "three.example"] {
        latest = set_domains(&w.app, &w, sensor, domain).await;
    }
    let removed = mailsensor::store::revisions::compact(&w.app.db, chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(removed >= 3, "compaction removed {removed} rows");
    assert_eq!(w.app.feed.seen(), before, "the tailer was held and has read nothing");
    drop(held);

    // The open stream hears that it missed something and gets the settings as they are now.
    let reset = sse.next().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert!(data(&reset)["reason"].as_str().unwrap().contains("fell behind"), "{}", reset.data);
    let snapshot = sse.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(data(&snapshot)["revision"].as_i64(), Some(latest));
    assert_eq!(data(&snapshot)["destination_domains"], json!(["three.example"]));
    let synced = sse.next().await;
    assert_eq!(synced.event, "synced");
    let head = mailsensor::store::revisions::head(&w.app.db).await.unwrap();
    assert_eq!(rev_of(&synced.id), head.rev);
    assert_eq!(w.app.feed.seen(), head.rev, "the tailer moved on to the head");

    // A token at the head resumes without a reset, and changes flow again.
    let mut resumed = Sse::open(&w.app, sensor, &token, Some(&synced.id)).await;
    assert_eq!(resumed.status, 200);
    resumed.expect_quiet(Duration::from_millis(700)).await;
    let next = set_domains(&w.app, &w, sensor, "four.example").await;
    for s in [&mut resumed, &mut sse] {
        let upsert = s.next().await;
        assert_eq!((upsert.event.as_str(), data(&upsert)["revision"].as_i64()), ("upsert", Some(next)));
    }
}

/// A replica whose log tailer is behind a resume token waits up to 3 s, then answers 503 with
/// Retry-After so the client tries another replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_answers_503() {
    let w = world(Backend::Postgres).await;
    let b = start_on(&w.app.url, "127.0.0.1:0").await;
    b.feed.shutdown();
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let mut a_stream = Sse::open(&w.app, sensor, &token, None).await;
    for _ in 0..3 {
        a_stream.next().await;
    }
    set_domains(&w.app, &w, sensor, "ahead.example").await;
    let ahead = a_stream.next().await.id;
    let started = Instant::now();
    let lagging = Sse::open(&b, sensor, &token, Some(&ahead)).await;
    assert_eq!(lagging.status, 503);
    assert!(started.elapsed() >= Duration::from_millis(2900), "{:?}", started.elapsed());
    assert!(lagging.headers.contains_key("retry-after"));
    // The replica that has seen it resumes the same token at once.
    let mut fine = Sse::open(&w.app, sensor, &token, Some(&ahead)).await;
    assert_eq!(fine.status, 200);
    fine.expect_quiet(Duration::from_millis(500)).await;
}

async fn stream_access(backend: Backend) {
    let w = world(backend).await;
    let own = w.sensor_token(&w.a, w.a.pcn_sensor);
    for (sensor, token, expected, why) in [
        (w.a.scn_sensor, own.clone(), 404, "another sensor of the same tenant"),
        (w.b.pcn_sensor, own.clone(), 404, "another tenant's sensor"),
        (Uuid::now_v7(), own.clone(), 404, "no such sensor"),
        (w.a.pcn_sensor, w.admin_pcn(), 403, "an administrator is not a worker"),
        (w.a.pcn_sensor, w.member(&w.a, Role::Administrator, w.a.scn), 404, "SCN administrator, PCN sensor"),
        (w.a.pcn_sensor, w.member(&w.b, Role::Administrator, w.b.pcn), 404, "other tenant's administrator"),
        (w.a.pcn_sensor, w.operator.clone(), 404, "the operator"),
    ] {
        let s = Sse::open(&w.app, sensor, &token, None).await;
        assert_eq!(s.status, expected, "stream: {why}");
        let r = w.app.get(&format!("/v1/sensors/{sensor}/config?wait=0"), &token).await;
        assert_eq!(r.status, expected, "long-poll: {why}");
        let r = w.app.put(&format!("/v1/sensors/{sensor}/workers/w1"), &token, json!({"version": "1"})).await;
        assert_eq!(r.status, expected, "ack: {why}");
    }
    let s = Sse::open(&w.app, w.a.pcn_sensor, &own, None).await;
    assert_eq!(s.status, 200);
    let r = w.app.call(Method::GET, &format!("/v1/sensors/{}/config-stream", w.a.pcn_sensor), None, None, &[]).await;
    assert_eq!(r.status, 401);
}

async fn long_poll(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let first = w.app.get(&format!("/v1/sensors/{sensor}/config"), &token).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let kinds: Vec<&str> =
        first.body["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reset", "snapshot", "synced"]);
    let next = first.body["next"].as_str().unwrap().to_owned();
    let idle = w.app.get(&format!("/v1/sensors/{sensor}/config?after={next}&wait=0"), &token).await;
    assert_eq!(idle.body["events"], json!([]));
    assert_eq!(idle.body["next"], next.as_str());
    // A waiting poll returns as soon as the change commits.
    let poll = {
        let (app_base, token, next) = (w.app.base.clone(), token.clone(), next.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r: Value = reqwest::Client::new()
                .get(format!("{app_base}/v1/sensors/{sensor}/config?after={next}&wait=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revision = set_domains(&w.app, &w, sensor, "poll.example").await;
    let (answer, took) = poll.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(answer["events"][0]["event"], "upsert");
    assert_eq!(answer["events"][0]["data"]["revision"].as_i64(), Some(revision));
    assert_eq!(answer["next"], answer["events"][0]["id"]);
    let bad = w.app.get(&format!("/v1/sensors/{sensor}/config?wait=61"), &token).await;
    assert_eq!(bad.status, 422);
}

async fn sensor_lifecycle_on_the_stream(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let created = w
        .app
        .post(&format!("/v1/tenants/{}/sensors", w.a.id), &admin, json!({"name": "edge", "node_id": w.a.pcn}))
        .await;
    let sensor: Uuid = serde_json::from_value(created.body["id"].clone()).unwrap();
    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&w.app, sensor, &token, None).await;
    let _reset = sse.next().await;
    assert_eq!(data(&sse.next().await)["node_id"], w.a.pcn.to_string());
    let synced = sse.next().await;
    let r = w.app.patch(&w.a.sensor_path(sensor), &admin, json!({"node_id": w.a.scn})).await;
    assert_eq!(r.status, 200);
    let moved = sse.next().await;
    assert_eq!(moved.event, "upsert");
    assert_eq!(data(&moved)["node_id"], w.a.scn.to_string());
    assert_eq!(data(&moved)["revision"], 1, "the settings themselves did not change");
    let r = w.app.delete(&w.a.sensor_path(sensor), &admin).await;
    assert_eq!(r.status, 204);
    let deleted = sse.next().await;
    assert_eq!(deleted.event, "delete");
    assert_eq!(data(&deleted)["sensor_id"], sensor.to_string());
    // The stream ends after the delete; a worker that was away still learns of it on resume.
    assert!(tokio::time::timeout(Duration::from_secs(5), sse.events.as_mut().unwrap().next()).await.unwrap().is_none());
    let mut late = Sse::open(&w.app, sensor, &token, Some(&synced.id)).await;
    assert_eq!(late.status, 200);
    assert_eq!(late.next().await.event, "upsert");
    assert_eq!(late.next().await.event, "delete");
    // Without a token there is nothing to snapshot any more.
    assert_eq!(Sse::open(&w.app, sensor, &token, None).await.status, 404);
}

/// The client follows through an API restart and resumes without loss or duplicates.
async fn follower_survives_restart(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let follower = Follower::start(FollowOptions::new(w.app.base.clone(), w.sensor_token(&w.a, sensor), sensor));
    let mut applied = follower.applied();
    until_applied(&follower, 1).await;
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(set_domains(&w.app, &w, sensor, &format!("before{i}.example")).await);
    }
    until_applied(&follower, *expected.last().unwrap()).await;

    let address = w.app.address().to_owned();
    w.app.stop().await;
    // While the API is away the worker keeps its last good settings.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(follower.in_force().unwrap().revision(), *expected.last().unwrap());
    let restarted = start_on(&w.app.url, &address).await;
    for i in 0..5 {
        expected.push(set_domains(&restarted, &w, sensor, &format!("after{i}.example")).await);
    }
    until_applied(&follower, *expected.last().unwrap()).await;

    let mut upserts = Vec::new();
    let mut ids = Vec::new();
    while let Ok(a) = applied.try_recv() {
        let Applied { kind, id, in_force } = a;
        if kind == EventKind::Upsert {
            upserts.push(in_force.unwrap().revision());
            ids.push(rev_of(&id.unwrap()));
        }
    }
    assert_eq!(upserts, expected, "every change once, in order");
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "{ids:?}");
    restarted.stop().await;
}

/// A change written through replica A reaches a subscriber of replica B (PostgreSQL NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_on_one_replica_reaches_subscribers_of_another() {
    let w = world(Backend::Postgres).await;
    // Replica B never polls: only the NOTIFY from A's commit can wake its tailer.
    let no_polling = mailsensor::stream::FeedOptions { poll_interval: Duration::from_secs(3600), ..Default::default() };
    let b = start_with(&w.app.url, "127.0.0.1:0", no_polling).await;
    let sensor = w.a.pcn_sensor;
    let followers: Vec<Follower> = (0..3)
        .map(|_| Follower::start(FollowOptions::new(b.base.clone(), w.sensor_token(&w.a, sensor), sensor)))
        .collect();
    for f in &followers {
        until_applied(f, 1).await;
    }
    let started = Instant::now();
    let revision = set_domains(&w.app, &w, sensor, "cross.example").await;
    for f in &followers {
        until_applied(f, revision).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // Both directions, several changes, every follower converges on the last.
    let mut last = revision;
    for i in 0..10 {
        let app = if i % 2 == 0 { &b } else { &w.app };
        last = set_domains(app, &w, sensor, &format!("x{i}.example")).await;
    }
    for f in &followers {
        until_applied(f, last).await;
        assert_eq!(f.in_force().unwrap().config.settings.document.destination_domains, vec!["x9.example".to_owned()]);
    }
}

async fn ack_fleet_and_write_and_wait(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let fleet_path = format!("{}/workers", w.a.sensor_path(sensor));
    let base = w.app.base.clone();
    let report = move |instance: &str, revision: i64, rejected: Value| {
        let (token, base, instance) = (token.clone(), base.clone(), instance.to_owned());
        async move {
            reqwest::Client::new()
                .put(format!("{base}/v1/sensors/{sensor}/workers/{instance}"))
                .bearer_auth(token)
                .json(&json!({"applied_settings_revision": revision, "version": "test", "rejected": rejected, "listen_address": "127.0.0.1:2525"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A live worker that applies and acknowledges every change it receives.
    let follower = Follower::start(FollowOptions::new(w.app.base.clone(), w.sensor_token(&w.a, sensor), sensor));
    until_applied(&follower, 1).await;
    assert_eq!(report("live", 1, json!([])).await, 200);
    let mut applied = follower.applied();
    let acker = {
        let report = report.clone();
        tokio::spawn(async move {
            while let Ok(a) = applied.recv().await {
                if let Some(f) = a.in_force {
                    report("live", f.revision(), json!([])).await;
                }
            }
        })
    };
    // A worker that stopped reporting a minute ago.
    assert_eq!(report("dead", 1, json!([])).await, 200);
    use mailsensor::store::entity::sensor_worker;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    sensor_worker::Entity::update_many()
        .col_expr(sensor_worker::Column::LastSeen, Expr::value(chrono::Utc::now() - chrono::Duration::seconds(60)))
        .filter(sensor_worker::Column::InstanceId.eq("dead"))
        .exec(&w.app.owner)
        .await
        .unwrap();

    let body = json!({"enabled": true, "destination_domains": ["wait.example"], "clients": [], "message_size_limit": {"unlimited": true}});
    let path = w.a.settings_path(sensor);
    let r = w.app.put(&format!("{path}?wait=applied&timeout=5"), &w.admin_pcn(), body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let revision = r.body["revision"].as_i64().unwrap();
    assert_eq!(
        r.body["rollout"],
        json!({"settings_revision": revision, "workers": 1, "applied": 1, "pending": [], "complete": true})
    );

    // A live worker that never applies the change holds the write until the timeout.
    assert_eq!(report("lazy", revision, json!([])).await, 200);
    let started = Instant::now();
    let r = w.app.patch(&format!("{path}?wait=applied&timeout=1"), &w.admin_pcn(), json!({"enabled": false})).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let rollout = &r.body["rollout"];
    assert_eq!((rollout["workers"].as_u64(), rollout["applied"].as_u64()), (Some(2), Some(1)), "{rollout}");
    assert_eq!(rollout["pending"], json!(["lazy"]));
    assert_eq!(rollout["complete"], false);
    let latest = r.body["revision"].as_i64().unwrap();
    until_applied(&follower, latest).await;

    // The fleet view.
    assert_eq!(report("broken", latest, json!([{"item": "/clients/0", "reason": "test"}])).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fleet = w.app.get(&fleet_path, &w.member(&w.a, Role::SecurityAuditor, w.a.pcn)).await;
    assert_eq!(fleet.status, 200, "{:?}", fleet.body);
    assert_eq!(fleet.body["settings_revision"].as_i64(), Some(latest));
    let states: std::collections::BTreeMap<String, String> = fleet.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instance_id"].as_str().unwrap().to_owned(), i["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(states["live"], "synced");
    assert_eq!(states["lazy"], "stale");
    assert_eq!(states["dead"], "disconnected");
    assert_eq!(states["broken"], "error");
    let officer = w.member(&w.a, Role::SecurityOfficer, w.a.pcn);
    assert_eq!(w.app.get(&fleet_path, &officer).await.status, 403);
    assert_eq!(w.app.get(&fleet_path, &w.member(&w.b, Role::Administrator, w.b.pcn)).await.status, 404);
    // Bad reports are refused whole.
    let token = w.sensor_token(&w.a, sensor);
    let r = w
        .app
        .put(&format!("/v1/sensors/{sensor}/workers/bad%20id"), &token, json!({"version": 1, "extra": true}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.pointers(), ["/version", "/extra"], "{:?}", r.body);
    assert!(r.body["errors"].as_array().unwrap().iter().any(|e| e["parameter"] == "instance_id"), "{:?}", r.body);
    let r = w.app.put(&format!("{path}?wait=soon"), &w.admin_pcn(), body).await;
    assert_eq!(r.status, 422);
    acker.abort();
}

async fn revision_history_and_restore(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let sensor = w.a.pcn_sensor;
    let path = w.a.settings_path(sensor);
    for d in ["a.example", "b.example", "c.example"] {
        set_domains(&w.app, &w, sensor, d).await;
    }
    let list = w.app.get(&format!("{path}/revisions?limit=2"), &admin).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let revs: Vec<i64> =
        list.body["items"].as_array().unwrap().iter().map(|i| i["revision"].as_i64().unwrap()).collect();
    assert_eq!(revs, [4, 3]);
    let cursor = list.body["next_cursor"].as_str().unwrap();
    let rest = w.app.get(&format!("{path}/revisions?limit=2&cursor={cursor}"), &admin).await;
    let revs: Vec<i64> =
        rest.body["items"].as_array().unwrap().iter().map(|i| i["revision"].as_i64().unwrap()).collect();
    assert_eq!(revs, [2, 1]);
    assert!(rest.body["next_cursor"].is_null());
    let two = w.app.get(&format!("{path}/revisions/2"), &w.member(&w.a, Role::SecurityAuditor, w.a.pcn)).await;
    assert_eq!(two.body["destination_domains"], json!(["a.example"]));
    assert_eq!(w.app.get(&format!("{path}/revisions/99"), &admin).await.status, 404);

    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&w.app, sensor, &token, None).await;
    for _ in 0..3 {
        sse.next().await;
    }
    let stale = w
        .app
        .call(Method::POST, &format!("{path}/revisions/2/restore"), Some(&admin), None, &[("if-match", "\"3\"")])
        .await;
    assert_eq!(stale.status, 412);
    let restored = w
        .app
        .call(Method::POST, &format!("{path}/revisions/2/restore"), Some(&admin), None, &[("if-match", "\"4\"")])
        .await;
    assert_eq!(restored.status, 200, "{:?}", restored.body);
    assert_eq!(restored.body["revision"], 5);
    assert_eq!(restored.body["destination_domains"], json!(["a.example"]));
    assert_eq!(restored.header("etag"), Some("\"5\""));
    let event = sse.next().await;
    assert_eq!((event.event.as_str(), data(&event)["revision"].as_i64()), ("upsert", Some(5)));
    let five = w.app.get(&format!("{path}/revisions/5"), &admin).await;
    assert_eq!(five.body["restored_from"], 2);
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events?sensor_id={sensor}&limit=500", w.a.id), &admin).await;
    let last = audit.body["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "smtp_integration.restore");
    assert_eq!(last["after"]["destination_domains"], json!(["a.example"]));
    let officer = w.member(&w.a, Role::SecurityOfficer, w.a.pcn);
    assert_eq!(w.app.get(&format!("{path}/revisions"), &officer).await.status, 403);
    let auditor = w.member(&w.a, Role::SecurityAuditor, w.a.pcn);
    assert_eq!(
        w.app.call(Method::POST, &format!("{path}/revisions/2/restore"), Some(&auditor), None, &[]).await.status,
        403
    );
}

/// A subscriber that stops reading is disconnected once it falls a buffer behind (memory stays
/// bounded), and resumes from its last event without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_resumes() {
    let w = world(Backend::Postgres).await;
    let small = mailsensor::stream::FeedOptions { subscriber_buffer: 16, ..Default::default() };
    let app = start_with(&w.app.url, "127.0.0.1:0", small).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let mut sse = Sse::open(&app, sensor, &token, None).await;
    for _ in 0..3 {
        sse.next().await;
    }
    // Large events (10,000 domains each) fill the socket buffers quickly once nobody reads.
    let domains: Vec<String> = (0..10_000).map(|i| format!("domain-number-{i}.example")).collect();
    let mut last = 0;
    for i in 0..60 {
        let mut list = domains.clone();
        list[0] = format!("change-{i}.example");
        let r = app.patch(&w.a.settings_path(sensor), &w.admin_pcn(), json!({"destination_domains": list})).await;
        assert_eq!(r.status, 200);
        last = r.body["revision"].as_i64().unwrap();
    }
    // Now read: some events, then the server ends the stream instead of buffering without bound.
    let mut received = Vec::new();
    let mut last_id = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), sse.events.as_mut().unwrap().next())
            .await
            .expect("the stream moves")
        {
            Some(Ok(e)) if e.event == "upsert" => {
                received.push(data(&e)["revision"].as_i64().unwrap());
                last_id = Some(e.id.clone());
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(received.len() < 59, "the slow subscriber was cut off ({} events delivered)", received.len());
    // Resuming delivers the rest, in order, without duplicates.
    let mut resumed = Sse::open(&app, sensor, &token, last_id.as_deref()).await;
    loop {
        let e = resumed.next().await;
        assert_eq!(e.event, "upsert");
        received.push(data(&e)["revision"].as_i64().unwrap());
        if *received.last().unwrap() == last {
            break;
        }
    }
    let expected: Vec<i64> = (2..=last).collect();
    assert_eq!(received, expected);
}

on_both_backends!(
    snapshot_then_changes_then_resume,
    resets,
    a_replica_behind_compaction_starts_over,
    stream_access,
    long_poll,
    sensor_lifecycle_on_the_stream,
    follower_survives_restart,
    ack_fleet_and_write_and_wait,
    revision_history_and_restore
);
