-- Trial databases only (docker compose, the Kubernetes dev overlay): the roles mailsensor's
-- row-level security migration expects, with a throwaway password for the server's login.
-- In production a DBA creates them (docs/operations.md, "1. The database") or the first
-- `mailsensor migrate` does, and the password comes from your secret store.
CREATE ROLE mailsensor_tenant NOLOGIN;
CREATE ROLE mailsensor_platform NOLOGIN;
CREATE ROLE mailsensor_api LOGIN NOINHERIT PASSWORD 'mailsensor-api-dev-only';
