"""API keys of API routes: the store (KV fx_api_keys, which the gateways follow), the usage the gateways report
(KV fx_api_usage), and /system/apikeys."""
