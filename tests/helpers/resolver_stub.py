"""A stand-in for `getent ahosts`: answers from a JSON table and records how it was run.

argv: resolver_stub.py TABLE LOG HOST. TABLE maps host names to lists of addresses;
prints them in getent's ahosts format; an unknown host exits 2 like getent does.
"""

import json
import os
import sys

table_path, log_path, host = sys.argv[1], sys.argv[2], sys.argv[3]
with open(log_path, "a", encoding="utf-8") as log:
    log.write(json.dumps({"argv": sys.argv[3:], "uid": os.getuid(), "gid": os.getgid()}) + "\n")
with open(table_path, encoding="utf-8") as f:
    table = json.load(f)
if host not in table:
    sys.exit(2)
for address in table[host]:
    print(f"{address:<15} STREAM {host}")
    print(f"{address:<15} DGRAM")
