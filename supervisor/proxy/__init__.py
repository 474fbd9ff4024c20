"""The egress proxy: Squid, run unprivileged in its own unit, the only way out for
`internet = "proxy"` workloads. `squid_conf.py` renders its configuration (pure),
`allowlist.py` holds the domains each workload may reach, `ports.py` which port is whose,
`control.py` writes the files and reloads it, `accesslog.py` turns its log into events,
`settings.py` is `[proxy]`."""
