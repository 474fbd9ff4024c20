"""Approval agents: separate, unprivileged processes that put pending requests before a human.

None of them runs inside the daemon; each talks to control.sock as an operator.
"""
