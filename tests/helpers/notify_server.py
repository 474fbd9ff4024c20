"""A freedesktop notification server for tests, on real D-Bus (the session bus in the env).

Serves org.freedesktop.Notifications: logs every call as a JSON line to LOG, answers
Notify with fresh ids, emits NotificationClosed on CloseNotification, and takes commands
on the Unix socket CMD (JSON lines): {"cmd": "invoke", "id": N, "key": "allow"} emits
ActionInvoked; {"cmd": "dismiss", "id": N} emits NotificationClosed with reason 2.

    python notify_server.py LOG CMD
"""

import asyncio
import itertools
import json
import os
import sys

from jeepney import DBusAddress, MatchRule, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import Proxy, open_dbus_router
from jeepney.low_level import HeaderFields

PATH = "/org/freedesktop/Notifications"
IFACE = "org.freedesktop.Notifications"
EMITTER = DBusAddress(PATH, interface=IFACE)


def plain(value):
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return [value[0], plain(value[1])]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


async def main(log_path: str, cmd_path: str) -> None:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115
    ids = itertools.count(1)
    async with open_dbus_router("SESSION") as router:
        await Proxy(message_bus, router).RequestName("org.freedesktop.Notifications", 4)

        async def command(reader, writer):
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "invoke":
                    await router.send(
                        new_signal(EMITTER, "ActionInvoked", "us", (cmd["id"], cmd["key"]))
                    )
                elif cmd["cmd"] == "dismiss":
                    await router.send(
                        new_signal(EMITTER, "NotificationClosed", "uu", (cmd["id"], 2))
                    )
                writer.write(b"ok\n")
                await writer.drain()

        server = await asyncio.start_unix_server(command, cmd_path)
        os.chmod(cmd_path, 0o666)
        calls = MatchRule(type="method_call", interface=IFACE, path=PATH)
        with router.filter(calls, bufsize=100) as queue:
            print("ready", flush=True)
            while True:
                msg = await queue.get()
                member = msg.header.fields.get(HeaderFields.member)
                log.write(json.dumps({"method": member, "args": plain(msg.body)}) + "\n")
                if member == "Notify":
                    await router.send(new_method_return(msg, "u", (next(ids),)))
                elif member == "CloseNotification":
                    await router.send(new_method_return(msg))
                    await router.send(
                        new_signal(EMITTER, "NotificationClosed", "uu", (msg.body[0], 3))
                    )
                elif member == "GetCapabilities":
                    await router.send(
                        new_method_return(
                            msg, "as", (["actions", "body", "body-markup", "persistence"],)
                        )
                    )
                elif member == "GetServerInformation":
                    await router.send(
                        new_method_return(msg, "ssss", ("clawvisor-test", "tests", "1", "1.2"))
                    )
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
