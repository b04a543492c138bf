"""Remote configuration: validated, signed, atomically applied pushes over MQTT (docs/config-push.md)."""
