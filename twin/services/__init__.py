"""No-application services (无感服务): declared rules evaluated over the live twin."""
