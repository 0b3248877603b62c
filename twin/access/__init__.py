"""Who may see what: roles and scopes (分权分域), the one disclosure-control policy (可用不可见), API keys, the audit chain."""
