"""The reference central brain (sans-I/O planner, distrust, bins) and its MQTT adapter."""
