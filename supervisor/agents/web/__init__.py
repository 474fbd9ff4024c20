"""`clawvisor approver web`: the operator's console in a browser, an approval agent like the
others (an unprivileged process in the operators' group, never the daemon). `auth.py`
holds the one-time links, sessions and CSRF tokens; `feed.py` the control-socket
subscription and what is pending; `app.py` the pages, the live stream and the checks
every request passes (Host, Origin, session, CSRF, a strict CSP)."""
