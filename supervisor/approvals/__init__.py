"""Approvals: an `ask` put to humans and what their answers let through.

- `broker`: prompts, the intents waiting behind them, agents, verdicts (one verdict,
  one release), deadlines and withdrawal;
- `prompt`: what a prompt holds and how each wait ends;
- `grants`: standing approvals ("for 30 minutes", "always"), keyed by intent and rule;
- `leftovers`: intents a stopped daemon left waiting, refused at the next start;
- `sanitize`: text made safe to show a human, the same on every channel.
"""
