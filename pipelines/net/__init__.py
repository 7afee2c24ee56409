"""Outbound network access: the address policy and the policy-pinned HTTP client."""
