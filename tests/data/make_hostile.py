"""Regenerate hostile.jsonl: parameter values built to break out of an argv element.

Each line is one JSON string, so NUL, newlines and lone surrogates are representable.
`{CANARY}` stands for a path the test makes unique: any value that could run a command
tries to create it. Run: python tests/data/make_hostile.py > tests/data/hostile.jsonl
"""

import json

C = "{CANARY}"
values: list[str] = []

# shell metacharacters and command injection, bare and after something plausible
for prefix in ("", "vim", "example.org", "https://example.org/", "docs/a.txt", "report"):
    for inj in (f";touch {C}", f"; touch {C}", f"|touch {C}", f"||touch {C}", f"&&touch {C}",
                f"&touch {C}", f"$(touch {C})", f"`touch {C}`", f"\ntouch {C}", f"\rtouch {C}",
                f"${{IFS}}touch${{IFS}}{C}", f">{C}", f">>{C}", f"<{C}", f"2>{C}",
                f"\x00;touch {C}", f"';touch {C};'", f"\";touch {C};\""):
        values.append(prefix + inj)
for v in (";", "|", "&", "&&", "||", "`", "$", "$(", "${", "$(id)", "`id`", "${HOME}", "$HOME",
          "*", "?", "[a-z]", "~", "~root", "!", "!!", "#", "'", '"', "\\", "\\\\", "{", "}",
          "(", ")", "<", ">", "\n", "\r\n", "\t", " ", "  ", "\x00", "\x1b[31m", "\x7f",
          "%s%s%s%n", "%x%x", "{0}", "{url}", "{{url}}", "{__class__}", "${jndi:ldap://x/a}"):
    values.append(v)

# leading dashes: options where operands belong
for v in ("-", "--", "---", "-rf", "-rf /", "--help", "--version", "-h", "-e", "-c id",
          f"--output={C}", f"-o{C}", "-oAPT::Get::AllowUnauthenticated=true",
          "--allow-downgrades", "-oDPkg::Pre-Invoke::=touch{C}", "--no-preserve-root",
          "--config-file=/tmp/x", "-x", "--=", "-vim", "--vim", "-example.org"):
    values.append(v.replace("{C}", C))

# paths: traversal, absolute, special files, symlink bait
for v in ("..", "../", "../..", "../../etc/passwd", "a/../../b", "a/./../..", "./..", "/",
          "/etc/passwd", "/etc/shadow", "//etc/passwd", "/./etc/passwd", "/proc/self/environ",
          "/proc/1/root", "/dev/tcp/127.0.0.1/22", "/dev/sda", "/root/.ssh/id_rsa",
          "~/.ssh/id_rsa", "docs/../../../etc", "docs//../..", "docs/.", "docs/..", ".",
          "link-to-etc/passwd", "link-to-etc", "docs/link-out", "a\x00b", "a/\x00/b",
          "docs/a.txt\x00.png", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc", "....//....//",
          "\u2025/\u2025/etc", "\uff0e\uff0e/etc", "C:\\Windows\\System32", "\\\\server\\share",
          "file.txt/", "a" * 300 + "/b", "/" * 50):
    values.append(v)

# URLs: schemes, credentials, hosts that are not what they seem
for v in ("file:///etc/passwd", "file://localhost/etc/passwd", "FILE:///etc/passwd",
          "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
          "javascript://example.org/%0aalert(1)", "data:text/html,<script>alert(1)</script>",
          "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "vbscript:msgbox(1)",
          "ftp://example.org/", "gopher://example.org:70/", "ldap://example.org/",
          "ssh://example.org/", "smb://example.org/share", "chrome://settings",
          "about:blank", "view-source:https://example.org", "blob:https://example.org/x",
          "https://user:pass@example.org/", "https://user@example.org/",
          "https://example.org@evil.test/", "https://evil.test\\@example.org/",
          "https://evil.test%40example.org/", "https://example.org:pass@evil.test/",
          "https://evil.test#@example.org/", "https://evil.test?@example.org/",
          "https://evil.test/\\@example.org", "https:evil.test", "https:/evil.test",
          "//evil.test/", "///evil.test/", "https:\\\\evil.test", "https://\\evil.test",
          "http://localhost/", "http://127.0.0.1/", "http://127.1/", "http://0x7f000001/",
          "http://2130706433/", "http://0177.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
          "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/",
          "http://[fd00:ec2::254]/", "http://10.0.0.1/", "http://192.168.1.1/admin",
          "http://100.64.0.1/", "http://0.0.0.0/", "http://example.org%00.evil.test/",
          "https://exa mple.org/", "https://example.org/ a", "https://example.org/\n",
          "https://example.org/\r\nX-Injected: 1", "https://example.org/\x00",
          "https://example.org/\u202egnp.exe", "https://example.org/\u200b",
          "https://xn--exmple-cua.com/", "https://exаmple.org/", "https://еxample.org/",
          "https://ехаmрle.org/", "https://example.org\u3002evil.test/",
          "https://example.org\uff0eevil.test/", "https://аррӏе.com/", "https://xn--80ak6aa92e.com/",
          "https://g\u043e\u043egle.com/", "https://paypa\u04cf.com/", "https://xn--/",
          "https://-example.org/", "https://example-.org/", "https://ex_ample.org/",
          "https://example.org:99999/", "https://example.org:-1/", "https://example.org:80:80/",
          "https://" + "a" * 64 + ".org/", "https://" + "a." * 130 + "org/",
          "https://example.org/" + "a" * 2100, "https://example.org/?" + "q=1&" * 600,
          "https://example.org/" + "\u00e9" * 1100, "https://ex\u00e4mple.org/",
          "http://[1:2:3:4:5:6:7:8:9]/", "http://[not-ipv6]/", "https://[]/",
          "https://example.org/%0d%0aSet-Cookie:a=b", "https://example.org/${IFS}",
          "https://example.org/$(id)", "https://example.org/`id`", "https://example.org/;id",
          "HTTPS://EXAMPLE.ORG/OK", "https://example.org./", "https://example.org../"):
    values.append(v)

# host names for egress-allow, and packages for install-app
for v in ("localhost", "127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "0", "0x7f.1",
          "example", "example.", "example..org", ".example.org", "*.example.org", "*",
          "example.org:443", "example.org/path", "user@example.org", "exa mple.org",
          "a" * 64 + ".org", "a." * 127 + "org", "xn--", "xn--80ak6aa92e.com",
          "\u0430pple.com", "EXAMPLE.ORG", "example.org\u3002evil", "\u200bexample.org",
          "vim", "vim=1:9.0", "vim=", "=vim", "vim==1", "vim/bookworm", "vim:amd64",
          "vim_1.0", "Vim", "VIM", "v", "vim*", "vim?", "lib++", "g++", "python3.11",
          "vim -y", "vim\nnano", "vim=1.0;id", "vim=-1", "vim=1.0 --reinstall",
          "../vim.deb", "/tmp/evil.deb", "./evil.deb", "http://evil.test/x.deb"):
    values.append(v)

# sizes
for n in (257, 513, 1025, 2049, 4097, 10000, 70000):
    values.append("x" * n)

# invalid UTF-8 as JSON escapes cannot carry it: lone surrogates instead
for v in ("\ud800", "\udc80", "\udfff", "a\ud800b", "\ud83d", "\ufffe", "\uffff",
          "\U0010ffff", "\u0000", "\u00ad", "\u061c", "\u2066x\u2069", "\ufeffBOM"):
    values.append(v)

seen: set[str] = set()
for v in values:
    if v not in seen:
        seen.add(v)
        print(json.dumps(v))
