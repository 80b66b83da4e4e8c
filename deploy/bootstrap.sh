#!/bin/sh
# One-shot set-up for docker-compose.yml: creates a demo tenant and sensor (if missing), enables it,
# and writes a sensor token for the workers to /run/mailsensor/sensor.token.
set -eu
api=${MAILSENSOR_API_URL:-http://api:8080}
out=/run/mailsensor
mkdir -p "$out"
until curl -fsS "$api/readyz" >/dev/null; do sleep 1; done
operator=$(mailsensor token --role platform_operator --sub bootstrap --ttl 600)
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -1; }
tenants=$(curl -fsS -H "Authorization: Bearer $operator" "$api/v1/tenants?limit=500")
tenant=$(printf '%s' "$tenants" | grep -o '{[^{}]*"name":"Demo"[^{}]*}' | field id || true)
if [ -z "$tenant" ]; then
    created=$(curl -fsS -X POST -H "Authorization: Bearer $operator" -H 'Content-Type: application/json' \
        -d '{"name":"Demo","pcn_name":"Demo PCN"}' "$api/v1/tenants")
    tenant=$(printf '%s' "$created" | field id)
fi
pcn=$(curl -fsS -H "Authorization: Bearer $operator" "$api/v1/tenants/$tenant" | field pcn_id)
admin=$(mailsensor token --role administrator --sub bootstrap --tenant "$tenant" --node "$pcn" --ttl 600)
sensors=$(curl -fsS -H "Authorization: Bearer $admin" "$api/v1/tenants/$tenant/sensors")
sensor=$(printf '%s' "$sensors" | grep -o '{[^{}]*"name":"mx-copy"[^{}]*}' | field id || true)
if [ -z "$sensor" ]; then
    sensor=$(curl -fsS -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d "{\"name\":\"mx-copy\",\"node_id\":\"$pcn\"}" "$api/v1/tenants/$tenant/sensors" | field id)
    # Accept mail for any recipient from the compose network (blank lists = the workers' subnet).
    curl -fsS -X PATCH -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d '{"enabled": true}' "$api/v1/tenants/$tenant/sensors/$sensor/smtp-integration" >/dev/null
fi
mailsensor token --role sensor --sub compose-workers --tenant "$tenant" --sensor "$sensor" --ttl 2592000 > "$out/sensor.token"
echo "tenant $tenant, PCN $pcn, sensor $sensor; worker token in $out/sensor.token"
