"""What an agent runtime sees of clawvisor: the MCP bridge and the SKILL.md writer.

Both run as the workload user and learn the workload's rights from the daemon's
`capabilities` intent; neither reads the policy files.
"""
