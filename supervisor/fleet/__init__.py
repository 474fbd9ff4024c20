"""Many VMs, one operator: each VM's trail shipped with systemd-journal-upload to a
collector's systemd-journal-remote over HTTPS with client certificates (`certs.py`
makes the fleet's CA and certificates with openssl; `journal.py` the two sides' command
lines and units). No transport of clawvisor's own."""
