"""The ACL xattr we write is what getfacl reads back."""

import subprocess

from supervisor.posix_acl import decode_acl, encode_acl, grant_users


def test_encode_decode_round_trip_orders_entries():
    blob = encode_acl(0o640, {1234: 6, 99: 4})
    tags = [(t, p, i) for t, p, i in decode_acl(blob)]
    assert [t for t, _, _ in tags] == [0x01, 0x02, 0x02, 0x04, 0x10, 0x20]
    assert [i for t, _, i in tags if t == 0x02] == [99, 1234]


def test_granted_users_show_in_getfacl(tmp_path):
    f = tmp_path / "sock"
    f.write_text("")
    grant_users(f, 0o660, [4321], 6)
    out = subprocess.run(
        ["getfacl", "-n", "-p", str(f)], capture_output=True, text=True, check=True
    ).stdout
    assert "user:4321:rw-" in out
    assert "other::---" in out
