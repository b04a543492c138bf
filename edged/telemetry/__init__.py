"""Telemetry: metrics snapshots, power and health readers, and the MQTT publisher."""
