"""Mosquitto deployment assets of the fleet (config with TLS, ACL, credentials)."""
