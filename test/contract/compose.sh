#!/usr/bin/env bash
# Runs the SecretStore contract suite against the docker-compose services: LocalStack's Secrets
# Manager (as the "real" AWS endpoint) and Vault in dev mode (as the "real" Vault), next to the
# in-process emulators. Extra arguments go to vitest (e.g. -t 'vault (real').
#
# The services are left running for the next run; stop them with: docker compose stop vault localstack
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
  echo "compose.sh: no Docker daemon reachable; start Docker and retry" >&2
  exit 1
fi

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi
"${compose[@]}" up -d --wait vault localstack

export CONTRACT_AWS=1
# LocalStack accepts any access key, so the "unknown credential" case cannot be checked there.
export CONTRACT_AWS_SKIP_AUTH=1
export AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:4566
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export CONTRACT_VAULT_ADDR=http://127.0.0.1:8200
export CONTRACT_VAULT_TOKEN=root
export CONTRACT_VAULT_MOUNT=secret

exec npx vitest run test/contract "$@"
