"""Debian's Chromium as the browser tests and the console's bench drive it (Playwright).

The flags keep it from reaching out at start (this machine's network is closed, and a
headless run needs no GPU, sync or component updates)."""

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
