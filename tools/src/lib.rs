//! Network readiness tools shared code: totem-ping, totem-pps, totem-latency.
