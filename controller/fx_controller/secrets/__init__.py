"""fx secrets (docs/secrets.md): the store (KV fx_secrets), the rules tying them to functions, the admin routes."""
