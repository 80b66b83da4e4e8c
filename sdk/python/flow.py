"""The README flow through the generated Python client (openapi-python-client), against a live server.

Run by scripts/sdk-test with the generated package on PYTHONPATH and, in the environment, the API
URL, the SMTP port of `mailsensor dev`'s worker and the tokens `dev` printed. Exits non-zero, with
the step that failed, on the first surprise.
"""
import datetime
import os
import smtplib
import sys
import time
import uuid

from mailsensor_client import AuthenticatedClient
from mailsensor_client.api.alerts import (
    create_alert_destination,
    delete_alert_destination,
    get_alert_destination,
    list_alert_deliveries,
    list_alert_events,
    pause_alert_destination,
    replay_alert_destination,
    resume_alert_destination,
    rotate_alert_destination_secret,
    test_alert_destination,
    update_alert_destination,
)
from mailsensor_client.api.detection import (
    abort_retrohunt,
    create_detection_ruleset,
    get_retrohunt,
    list_retrohunt_matches,
    start_retrohunt,
    delete_detection_ruleset,
    list_detection_ruleset_revisions,
    restore_detection_ruleset_revision,
    test_detection_ruleset,
    update_detection_ruleset,
)
from mailsensor_client.api.evaluate import evaluate_smtp_integration
from mailsensor_client.api.fleet import list_sensor_workers
from mailsensor_client.api.messages import (
    erase_messages_of_address,
    get_message,
    get_raw_message,
    list_messages,
    rescan_message,
)
from mailsensor_client.api.revisions import list_settings_revisions, restore_settings_revision
from mailsensor_client.api.sensors import create_sensor, delete_sensor
from mailsensor_client.api.tenants import get_tenant_settings, update_tenant_settings
from mailsensor_client.api.smtp_integration import (
    get_smtp_integration,
    replace_smtp_integration,
    update_smtp_integration,
)
from mailsensor_client.models import (
    CreateAlertDestination,
    Filters,
    MinVerdict,
    ReplayAlerts,
    UpdateAlertDestination,
    WebhookTarget,
    CreateDetectionRuleset,
    CreateRetrohunt,
    CreateSensor,
    ErasureRequest,
    TenantSettingsPatch,
    RulesetTest,
    UpdateDetectionRuleset,
    EvaluateRequest,
    FieldError,
    Limited,
    Problem,
    SettingsDocument,
    SettingsPatch,
    SizeLimitPatch,
    SizeUnit,
    SmtpIntegration,
    Unlimited,
)

API = os.environ["MAILSENSOR_API"]
TENANT = uuid.UUID(os.environ["TENANT"])
PCN = uuid.UUID(os.environ["PCN"])
DEMO_SENSOR = uuid.UUID(os.environ["PCN_SENSOR"])
SMTP_PORT = int(os.environ["SMTP_PORT"])


def check(condition, what):
    if not condition:
        print(f"python sdk: FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def client(token):
    return AuthenticatedClient(base_url=API, token=token, raise_on_unexpected_status=True)


admin = client(os.environ["ADMIN_PCN"])
auditor = client(os.environ["AUDITOR"])
officer = client(os.environ["OFFICER"])
senior = client(os.environ["SENIOR_OFFICER"])

# Create a sensor on the PCN.
created = create_sensor.sync_detailed(TENANT, client=admin, body=CreateSensor(name=f"py-sdk-{uuid.uuid4().hex[:8]}", node_id=PCN))
check(created.status_code == 201, f"create sensor: {created.status_code} {created.content!r}")
sensor = created.parsed.id

# Read its settings, with the ETag.
read = get_smtp_integration.sync_detailed(TENANT, sensor, client=admin)
check(isinstance(read.parsed, SmtpIntegration), f"read: {read.content!r}")
check(read.parsed.enabled is False and isinstance(read.parsed.message_size_limit, Unlimited), "defaults")
etag = read.headers["etag"]

# Replace them with If-Match.
document = SettingsDocument(
    enabled=True,
    destination_domains=["example.com", "!hr.example.com"],
    clients=["192.0.2.0/24", "!192.0.2.7"],
    message_size_limit=Limited(unlimited=False, value=25, unit=SizeUnit.MB),
)
put = replace_smtp_integration.sync_detailed(TENANT, sensor, client=admin, body=document, if_match=etag)
check(put.status_code == 200 and put.parsed.revision == 2, f"PUT: {put.status_code} {put.content!r}")
# The same write again over the old ETag: 412, a Problem, told apart by its status.
stale = replace_smtp_integration.sync_detailed(TENANT, sensor, client=admin, body=document, if_match=etag)
check(stale.status_code == 412 and isinstance(stale.parsed, Problem), f"412: {stale.status_code} {stale.content!r}")
check(stale.headers["etag"] == '"2"', "412 names the current ETag")

# Change one thing with a merge patch (the README's PATCH).
patch = update_smtp_integration.sync_detailed(
    TENANT, sensor, client=admin, body=SettingsPatch(message_size_limit=SizeLimitPatch(value=10))
)
check(patch.status_code == 200, f"PATCH: {patch.status_code} {patch.content!r}")
limit = patch.parsed.message_size_limit
check(isinstance(limit, Limited) and limit.value == 10 and limit.unit == SizeUnit.MB, f"patched limit: {limit}")

# A bad write: a 422 whose errors are typed, one per bad field.
bad = update_smtp_integration.sync_detailed(
    TENANT, sensor, client=admin, body=SettingsPatch(destination_domains=["*.example.org"], clients=["10.0.0.5/24"])
)
check(bad.status_code == 422 and isinstance(bad.parsed, Problem), f"422: {bad.status_code} {bad.content!r}")
check(all(isinstance(e, FieldError) for e in bad.parsed.errors), "errors are FieldError models")
check(
    [e.pointer for e in bad.parsed.errors] == ["/destination_domains/0", "/clients/0"],
    f"every bad field: {[e.to_dict() for e in bad.parsed.errors]}",
)

# What would a worker do?
evaluation = evaluate_smtp_integration.sync(
    TENANT,
    sensor,
    client=auditor,
    body=EvaluateRequest(client_ip="192.0.2.10", recipients=["a@sales.example.com", "b@hr.example.com"], size=1048576),
)
check(evaluation.connect.decision.value == "accept", f"connect: {evaluation.connect}")
check([r.decision.value for r in evaluation.recipients] == ["accept", "reject"], "recipients")
check(evaluation.recipients[1].reply.code == 550, "the exact reply")

# History and restore.
history = list_settings_revisions.sync(TENANT, sensor, client=admin, limit=10)
check([r.revision for r in history.items] == [3, 2, 1], f"history: {[r.revision for r in history.items]}")
restored = restore_settings_revision.sync_detailed(TENANT, sensor, 1, client=admin)
check(restored.status_code == 200 and restored.parsed.revision == 4 and restored.parsed.enabled is False, "restore")

# The fleet view of the demo sensor, which `dev` runs a worker for.
fleet = list_sensor_workers.sync(TENANT, DEMO_SENSOR, client=admin)
check(len(fleet.items) >= 1 and fleet.items[0].state.value == "synced", f"fleet: {fleet}")

# Messages: one sent through the demo worker, found and read back raw.
subject = f"py-sdk {uuid.uuid4()}"
with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=30) as smtp:
    smtp.sendmail("alice@example.org", ["bob@example.com"], f"Subject: {subject}\r\n\r\nhello\r\n".encode())
found = None
for _ in range(50):
    page = list_messages.sync(TENANT, client=officer, sensor_id=DEMO_SENSOR, limit=500)
    found = next((m for m in page.items if m.headers.subject == subject), None)
    if found:
        break
    time.sleep(0.1)
check(found is not None, "the message is listed")
check(get_message.sync(TENANT, found.id, client=officer).envelope.rcpt_to == ["bob@example.com"], "envelope")
raw = get_raw_message.sync_detailed(TENANT, found.id, client=officer)
check(raw.status_code == 200 and subject.encode() in raw.content, f"raw: {raw.status_code}")

# A rescan: the senior officer may, the officer may not; the earlier result is kept.
def scanned(message_id):
    for _ in range(200):
        m = get_message.sync(TENANT, message_id, client=officer)
        if m.verdict.value != "pending":
            return m
        time.sleep(0.05)
    check(False, "the message was scanned")


first = scanned(found.id)
denied = rescan_message.sync_detailed(TENANT, found.id, client=officer)
check(denied.status_code == 403 and isinstance(denied.parsed, Problem), f"an officer may not rescan: {denied.status_code}")
again = rescan_message.sync_detailed(TENANT, found.id, client=senior)
check(again.status_code == 202 and again.parsed.earlier_scans[0].verdict == first.verdict, f"rescan: {again.status_code}")
check(len(scanned(found.id).earlier_scans) == 1, "the earlier result is kept")

# A detection ruleset of the senior officer's: a compile error names its line, the explainer says
# where a rule matched the stored message, a rule set off and the first revision restored.
rule = f'rule subject_seen : sdk {{\n  strings: $s = "{subject}"\n  condition: $s\n}}\n'
broken = create_detection_ruleset.sync_detailed(
    TENANT, client=senior, body=CreateDetectionRuleset(name="broken", source="rule x {\n  condition: nope\n}\n")
)
check(broken.status_code == 422 and broken.parsed.errors[0].line == 2, f"compile error: {broken.content!r}")
name = f"py-sdk-{uuid.uuid4().hex[:8]}"
refused = create_detection_ruleset.sync_detailed(TENANT, client=admin, body=CreateDetectionRuleset(name=name, source=rule))
check(refused.status_code == 403, f"an administrator may not write rulesets: {refused.status_code}")
made = create_detection_ruleset.sync_detailed(TENANT, client=senior, body=CreateDetectionRuleset(name=name, source=rule))
check(made.status_code == 201 and made.parsed.rules == ["subject_seen"], f"create ruleset: {made.content!r}")
ruleset = made.parsed.id
tried = test_detection_ruleset.sync_detailed(TENANT, client=auditor, body=RulesetTest(source=rule, message_id=found.id))
check(tried.status_code == 200 and tried.parsed.matches[0].rule == "subject_seen", f"explainer: {tried.content!r}")
check(tried.parsed.matches[0].strings[0].length == len(subject), "the match says where")
off = update_detection_ruleset.sync_detailed(TENANT, ruleset, client=senior, body=UpdateDetectionRuleset(enabled=False))
check(off.status_code == 200 and off.parsed.revision == 2 and off.parsed.enabled is False, f"switch off: {off.content!r}")
history = list_detection_ruleset_revisions.sync(TENANT, ruleset, client=auditor)
check([r.revision for r in history.items] == [2, 1], "history")
back = restore_detection_ruleset_revision.sync_detailed(TENANT, ruleset, 1, client=senior)
check(back.status_code == 200 and back.parsed.enabled is True and back.parsed.revision == 3, f"restore: {back.content!r}")

# A retro-hunt of the saved ruleset over the last hour finds the stored message, with where.
now = datetime.datetime.now(datetime.timezone.utc)
window = dict(since=now - datetime.timedelta(hours=1), until=now + datetime.timedelta(minutes=5))
hunt = start_retrohunt.sync_detailed(TENANT, client=senior, body=CreateRetrohunt(ruleset_id=ruleset, **window))
check(hunt.status_code == 202 and hunt.parsed.state.value in ("queued", "running"), f"start: {hunt.content!r}")
for _ in range(400):
    done = get_retrohunt.sync(TENANT, hunt.parsed.id, client=auditor)
    if done.state.value not in ("queued", "running"):
        break
    time.sleep(0.05)
check(done.state.value == "finished" and done.progress.matches == 1, f"the retro-hunt: {done.to_dict()}")
matched = list_retrohunt_matches.sync(TENANT, hunt.parsed.id, client=auditor).items
check(matched[0].message_id == found.id and matched[0].strings[0].length == len(subject), "what it found, and where")
late = abort_retrohunt.sync_detailed(TENANT, hunt.parsed.id, client=senior)
check(late.status_code == 409, f"a finished retro-hunt is not aborted: {late.status_code}")
check(delete_detection_ruleset.sync_detailed(TENANT, ruleset, client=senior).status_code == 204, "delete ruleset")

# An alert destination: a webhook whose secret is shown once, filters, a test event and its
# delivery log, a rotation, pause and resume, a replay, the tenant's events.
hook = create_alert_destination.sync_detailed(
    TENANT,
    client=admin,
    body=CreateAlertDestination(
        name=f"py-sdk-{uuid.uuid4().hex[:8]}",
        webhook=WebhookTarget(url="https://siem.example.com/hooks/mailsensor"),
        filters=Filters(min_verdict=MinVerdict.MALICIOUS, engines=["yara", "clamav"]),
    ),
)
check(hook.status_code == 201 and hook.parsed.secret.startswith("whsec_"), f"create destination: {hook.content!r}")
destination = hook.parsed.id
read = get_alert_destination.sync(TENANT, destination, client=auditor)
check(read.filters.min_verdict == MinVerdict.MALICIOUS and "secret" not in read.to_dict(), "read: never the secret")
refused = test_alert_destination.sync_detailed(TENANT, destination, client=auditor)
check(refused.status_code == 403, f"an auditor may not send a test: {refused.status_code}")
sent = test_alert_destination.sync_detailed(TENANT, destination, client=admin)
check(sent.status_code == 202 and sent.parsed.event_type == "destination.test", f"test: {sent.content!r}")
log = list_alert_deliveries.sync(TENANT, destination, client=auditor)
check(log.items[0].id == sent.parsed.id, "the delivery log lists the test")
changed = update_alert_destination.sync_detailed(
    TENANT, destination, client=admin, body=UpdateAlertDestination(filters=Filters(min_verdict=MinVerdict.SUSPICIOUS))
)
check(changed.status_code == 200 and changed.parsed.filters.min_verdict == MinVerdict.SUSPICIOUS, f"update: {changed.content!r}")
rotated = rotate_alert_destination_secret.sync_detailed(TENANT, destination, client=admin)
check(rotated.parsed.secret != hook.parsed.secret and rotated.parsed.previous_secret_until, "rotate: both sign for a while")
check(pause_alert_destination.sync(TENANT, destination, client=admin).state.value == "paused", "pause")
check(resume_alert_destination.sync(TENANT, destination, client=admin).state.value == "active", "resume")
now = datetime.datetime.now(datetime.timezone.utc)
replayed = replay_alert_destination.sync_detailed(
    TENANT, destination, client=admin, body=ReplayAlerts(since=now - datetime.timedelta(hours=1), until=now)
)
check(replayed.status_code == 202, f"replay: {replayed.content!r}")
events = list_alert_events.sync(TENANT, client=auditor)
check(any(e.id == sent.parsed.event_id for e in events.items), "the test event is listed")
check(delete_alert_destination.sync_detailed(TENANT, destination, client=admin).status_code == 204, "delete destination")

# Retention: the tenant's administrator chooses within the platform's cap; null follows the default.
settings = get_tenant_settings.sync(TENANT, client=auditor)
check(settings.message_retention_is_default, f"no choice made yet: {settings}")
chosen = update_tenant_settings.sync_detailed(TENANT, client=admin, body=TenantSettingsPatch(message_retention_days=7))
check(chosen.status_code == 200 and chosen.parsed.message_retention_days == 7, f"choose: {chosen.content!r}")
too_long = update_tenant_settings.sync_detailed(
    TENANT, client=admin, body=TenantSettingsPatch(message_retention_days=settings.platform_max_retention_days + 1)
)
check(
    too_long.status_code == 422 and [e.pointer for e in too_long.parsed.errors] == ["/message_retention_days"],
    f"above the cap: {too_long.content!r}",
)
back = update_tenant_settings.sync(TENANT, client=admin, body=TenantSettingsPatch(message_retention_days=None))
check(back.message_retention_is_default and back.message_retention_days == settings.platform_default_retention_days, "default")

# A data-subject request: everything from one address is erased, counted.
someone = f"erase-me-{uuid.uuid4().hex[:8]}@example.org"
with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=30) as smtp:
    smtp.sendmail(someone, ["bob@example.com"], b"Subject: mine\r\n\r\nplease forget me\r\n")
for _ in range(50):
    if any(m.envelope.mail_from == someone for m in list_messages.sync(TENANT, client=admin, limit=500).items):
        break
    time.sleep(0.1)
erased = erase_messages_of_address.sync_detailed(TENANT, client=admin, body=ErasureRequest(address=someone.upper()))
check(erased.status_code == 200 and erased.parsed.messages_erased == 1, f"erase: {erased.content!r}")
check(not any(m.envelope.mail_from == someone for m in list_messages.sync(TENANT, client=admin, limit=500).items), "erased")

check(delete_sensor.sync_detailed(TENANT, sensor, client=admin).status_code == 204, "delete")
print("python sdk: the README flow passed")
