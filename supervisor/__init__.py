"""clawvisor's daemon: sockets, identity, dispatch, approvals, audit, monitors, provisioning."""
