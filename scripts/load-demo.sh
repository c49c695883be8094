#!/usr/bin/env bash
# Load the demo tariff and accounts (idempotent: re-running changes nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
ctl=.venv/bin/ocsctl
$ctl db migrate
if ! $ctl tariff show demo >/dev/null 2>&1; then
  $ctl tariff import demo scripts/demo/rates.csv --bands scripts/demo/bands.csv \
    --currency EUR --timezone Europe/Berlin
fi
$ctl account show alice >/dev/null 2>&1 || $ctl account create alice --currency EUR --tariff demo \
  --alias 4915110000001 --password alice-secret
$ctl account show bob >/dev/null 2>&1 || $ctl account create bob --currency EUR --tariff demo \
  --postpaid --credit-limit 50.00 --alias 4915110000002
$ctl topup alice 20.00 --reference demo-alice-1 >/dev/null
$ctl account show alice
$ctl account show bob
# the web dashboard (http://127.0.0.1:8080/ui with run-demo.sh) logs in with an API token: one for the demo
if ! $ctl api token list --json | grep -q '"name": "demo"'; then
  echo "dashboard token for http://127.0.0.1:8080/ui (self-care: /my as 4915110000001 / alice-secret):"
  $ctl api token create demo --role admin
fi
