"""What clawvisor watches: syscalls (eBPF), overlay writes (inotify), nftables counters.

Every monitor turns what it sees into typed events (events.py) on one in-process bus
(bus.py); the trigger engine (supervisor/triggers.py) turns events into responses.
"""
