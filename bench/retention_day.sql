-- One simulated day of mail for bench/retention.sh, run as the owner (a superuser: the FORCEd
-- row-level security does not apply to it). psql variables:
--   day        the UTC day, YYYY-MM-DD
--   per_day    messages that day
--   msg_bytes  bytes of content per message (one chunk)
--   tenant     the tenant's id
--   keys       1: a message_keys row per message (as the intake writes), 0: none
-- Ids are UUIDv7 of a random millisecond of the day: the 48-bit time prefix of
-- mailsensor_uuid_at(t), the version nibble 7, then random bits (gen_random_uuid's), so each id
-- falls in [mailsensor_uuid_at(day), mailsensor_uuid_at(day + 1)): that day's partition.
-- Content: incompressible bytes (md5 digests of random numbers, hex-decoded), from a pool of 64
-- distinct blobs made per session, each message's copy overlaid with its own id in its first 16
-- bytes. TOAST compresses each value on its own, so repeats across rows are stored in full.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET synchronous_commit = on;

CREATE TEMP TABLE bench_blobs AS
SELECT n, substring(decode(string_agg(md5(random()::text || ':' || n || ':' || g), ''), 'hex')
                    FROM 1 FOR :msg_bytes) AS data
  FROM generate_series(0, 63) AS n, generate_series(1, ceil(:msg_bytes / 16.0)::int) AS g
 GROUP BY n;

CREATE TEMP TABLE bench_ids AS
SELECT (substr(mailsensor_uuid_at(t)::text, 1, 14) || '7' || substr(gen_random_uuid()::text, 16))::uuid AS id,
       t, g
  FROM (SELECT (:'day'::date)::timestamp AT TIME ZONE 'UTC'
               + floor(random() * 86400000) * interval '1 millisecond' AS t, g
          FROM generate_series(1, :per_day) AS g) AS s;

BEGIN;
-- In id order, as the intake stores them (ids grow with time).
INSERT INTO messages (id, tenant_id, sensor_id, idempotency_key, status, received_at, client_ip, helo,
                      mail_from, rcpt_to, tls, worker, size, sha256, md5, header_from, header_to, subject,
                      message_id, date, verdict, detections, parts, content_key)
SELECT id, :'tenant', '00000000-0000-7000-8000-000000000001', 'bench-' || id, 'stored', t, '192.0.2.' || (g % 250 + 1),
       'mx' || (g % 50) || '.example.net', 'sender' || g || '@example.net', '["rcpt@example.com"]', true,
       'bench', :msg_bytes, encode(sha256(id::text::bytea), 'hex'), md5(id::text),
       'Sender <sender' || g || '@example.net>', 'rcpt@example.com', 'Simulated message ' || g,
       '<' || id || '@example.net>', to_char(t, 'Dy, DD Mon YYYY HH24:MI:SS +0000'), 'clean', '[]', '[]',
       encode(sha256(('content' || id)::bytea), 'hex')
  FROM bench_ids ORDER BY id;
INSERT INTO message_chunks (message_id, seq, data)
SELECT i.id, 0, overlay(b.data PLACING uuid_send(i.id) FROM 1)
  FROM bench_ids AS i JOIN bench_blobs AS b ON b.n = i.g % 64 ORDER BY i.id;
INSERT INTO message_keys (tenant_id, sensor_id, idempotency_key, content_key, message_id, received_at)
SELECT :'tenant', '00000000-0000-7000-8000-000000000001', 'bench-' || id,
       encode(sha256(('content' || id)::bytea), 'hex'), id, t
  FROM bench_ids WHERE :keys = 1 ORDER BY id;
COMMIT;
