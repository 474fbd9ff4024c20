"""`clawvisor provision`: converge the box to workloads.toml, one kind of thing per module.

Each module looks at the system and returns the changes it would make; nothing is
touched until the whole plan is known. Running the plan again afterwards finds nothing.
"""
