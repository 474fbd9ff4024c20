"""A stand-in for an executor's command: records how it was started, then exits.

argv: recorder.py OUTFILE [ARGS...]; appends one JSON line to OUTFILE. Exit status and
stderr can be forced with RECORDER_EXIT / RECORDER_STDERR args of the form
`--exit=N` given as the first argument after OUTFILE (they are recorded too).
`--sleep=S` as the first argument writes a `started` line, sleeps S seconds, then
records as usual (with `"finished": true`): a slow command that can be seen mid-run.
"""

import json
import os
import sys
import time

out = sys.argv[1]
args = sys.argv[2:]
slept = False
if args and args[0].startswith("--sleep="):
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps({"started": os.getpid()}) + "\n")
    time.sleep(float(args[0].split("=", 1)[1]))
    slept = True
record = {
    "argv": sys.argv[1:],
    "args": args,
    "uid": os.getuid(),
    "euid": os.geteuid(),
    "gid": os.getgid(),
    "groups": sorted(os.getgroups()),
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "umask": os.umask(0),
    "pgid_is_pid": os.getpgid(0) == os.getpid(),
    "stdin_is_devnull": os.path.samestat(os.fstat(0), os.stat("/dev/null")),
    "finished": slept,
}
with open(out, "a", encoding="utf-8") as f:
    f.write(json.dumps(record) + "\n")
if args and args[0].startswith("--exit="):
    sys.stderr.write("recorder: forced failure\n")
    sys.exit(int(args[0].split("=", 1)[1]))
