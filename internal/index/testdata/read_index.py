#!/usr/bin/env python3
"""Independent reader of securefsd's namespace index records (storage v2),
written from docs/FORMAT.md section 16 alone, not from the Go code.

Usage: read_index.py VECTORS : checks every record, name key and state case of
the vector file (the root hash recomputed from the valid records); exits
non-zero on any disagreement. The primitives (HKDF-SHA256,
XChaCha20-Poly1305) come from the format's v1 decryptor.
"""
import base64
import hashlib
import hmac
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "envelope", "testdata"))
from decrypt_v1 import hkdf, xchacha_open  # noqa: E402
from cryptography.exceptions import InvalidTag  # noqa: E402


def main(path):
    root, cases = None, []
    for line in open(path, encoding="utf-8"):
        if ": " not in line:
            continue
        k, v = line.rstrip("\n").split(": ", 1)
        if k == "rootkey":
            root = base64.b64decode(v)
        elif k == "case":
            cases.append({"case": v})
        else:
            cases[-1][k] = v
    k_rec = hkdf(root, b"", b"securefsd v2 record", 32)
    k_name = hkdf(root, b"", b"securefsd v2 name", 32)
    k_sum = hkdf(root, b"", b"securefsd v2 root hash", 32)

    def open_(sk, sealed):
        return xchacha_open(k_rec, sealed[:24], sealed[24:], b"securefsd v2 record " + sk)

    bad, total = 0, bytearray(32)
    for c in cases:
        if c["case"] == "record":
            sk, sealed = bytes.fromhex(c["stored"]), base64.b64decode(c["sealed"])
            try:
                value, got = open_(sk, sealed), "value"
            except InvalidTag:
                got = "auth failure"
            if got != c["expect"] or (got == "value" and value != base64.b64decode(c["value"])):
                print("disagree: record", c["stored"], got)
                bad += 1
            if got == "value":
                mac = hmac.new(k_sum, struct.pack(">I", len(sk)) + sk + sealed, hashlib.sha256).digest()
                total = bytearray(a ^ b for a, b in zip(total, mac))
        elif c["case"] == "namekey":
            parent, name = base64.b64decode(c["parent"]), base64.b64decode(c["name"])
            nk = hmac.new(k_name, struct.pack(">I", len(parent)) + parent + name, hashlib.sha256).digest()[:16]
            if nk.hex() != c["key"]:
                print("disagree: name key", nk.hex())
                bad += 1
        elif c["case"] == "state":
            plain = open_(b"\0", base64.b64decode(c["sealed"]))
            (epoch,) = struct.unpack(">Q", plain[:8])
            if epoch != int(c["epoch"]) or plain[8:].hex() != c["sum"] or bytes(total) != plain[8:]:
                print("disagree: state", epoch, plain[8:].hex(), bytes(total).hex())
                bad += 1
    print(f"{len(cases)} cases, {bad} disagreements")
    return 1 if bad or not cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
