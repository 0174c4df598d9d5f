#!/usr/bin/env python3
"""Independent reader of sealed users.db records (securefsd users.db schema 2),
written from docs/FORMAT.md section 15 alone, not from the Go code.

Usage: read_sealed.py VECTORS : opens every case of the vector file and checks
its "expect"/"value"; exits non-zero on any disagreement. The primitives
(HKDF-SHA256, XChaCha20-Poly1305) come from the format's v1 decryptor.
"""
import base64
import hashlib
import hmac
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "envelope", "testdata"))
from decrypt_v1 import hkdf, xchacha_open  # noqa: E402
from cryptography.exceptions import InvalidTag  # noqa: E402


def open_record(uk, bucket, name, stored, sealed):
    k_keys = hkdf(uk, b"", b"securefsd v2 users keys", 32)
    k_values = hkdf(uk, b"", b"securefsd v2 users values", 32)
    if len(sealed) < 24 + 16:
        raise InvalidTag()
    plain = xchacha_open(k_values, sealed[:24], sealed[24:], b"securefsd v2 users " + bucket + b"\0" + stored)
    (n,) = struct.unpack(">H", plain[:2])
    got_name, value = plain[2:2 + n], plain[2 + n:]
    if len(got_name) != n or hmac.new(k_keys, bucket + b"\0" + got_name, hashlib.sha256).digest()[:16] != stored:
        raise InvalidTag()
    return got_name, value


def main(path):
    key, cases, cur = None, [], None
    for line in open(path, encoding="ascii"):
        if ": " not in line:
            continue
        k, v = line.rstrip("\n").split(": ", 1)
        if k == "key":
            key = base64.b64decode(v)
        elif k == "case":
            cur = {"case": v}
            cases.append(cur)
        else:
            cur[k] = v
    bad = 0
    for c in cases:
        bucket, name = c["bucket"].encode(), base64.b64decode(c["name"])
        stored, sealed = bytes.fromhex(c["stored"]), base64.b64decode(c["sealed"])
        try:
            got_name, value = open_record(key, bucket, name, stored, sealed)
            got = "value" if got_name == name else "auth failure"
        except InvalidTag:
            got = "auth failure"
        if got != c["expect"] or (got == "value" and value != base64.b64decode(c["value"])):
            print("disagree:", c["case"], "got", got)
            bad += 1
    print(f"{len(cases)} cases, {bad} disagreements")
    return 1 if bad or not cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
