"""The wire: what crosses clawvisor's sockets, as msgspec Structs (the schema, the
validator and the docs at once), and the codecs at the edges.

- `common`: line size, request ids, error codes, replies, the encoder;
- `intents`: gateways' requests and replies on intents.sock, decoded with typed errors;
- `control`: operators' commands, their results, and agents' events on control.sock;
- `framing`: bytes to lines, linear, refusing over-long lines;
- `schema`: the JSON Schema generated from the Structs (`clawvisor schema`);
- `client`, `aclient`: talking to the daemon from a gateway (sync and asyncio).
"""
