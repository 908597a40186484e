# Vault policy for Rotator (KV v2 mounted at "secret", SECRET_PATH_TEMPLATE twilio/{accountSid}).
# Change "secret" and "twilio" if you set VAULT_KV_MOUNT or another template.
#   vault policy write rotator deploy/vault/rotator.hcl

# Current, pending (<path>/pending) and previous versions of every credential's secret.
path "secret/data/twilio/*" {
  capabilities = ["create", "read", "update"]
}

# Which version is previous, and which key it holds, lives in custom_metadata.
path "secret/metadata/twilio/*" {
  capabilities = ["create", "read", "update"]
}

# Dropping a consumed pending version.
path "secret/delete/twilio/*" {
  capabilities = ["update"]
}

# The start-up and readiness check reads the mount's KV version (as the vault CLI does).
path "sys/internal/ui/mounts/secret" {
  capabilities = ["read"]
}
