#!/usr/bin/env python3
"""Independent reader of a securefsd storage version 2 store, written from
docs/FORMAT.md sections 16 and 17 alone, not from the Go code.

Usage: read_tree.py DIR : DIR holds `keyring` (the plain keyring, section 10),
`rootkey` (the index root key NRK, base64), `records` (one line per index
record: the stored key in hex and the sealed value in base64, as any bbolt
reader dumps them), `blobs/` (the store's blob directory) and `expect`, lines
of checks, their fields separated by tabs:

    ls TREE PATH NAME/NAME/...      the sorted names in directory PATH
    cat TREE PATH SIZE SHA256       the file's plaintext
    damaged TREE PATH ERROR         reading the file fails with ERROR (ErrAuth)

PATH "." is the tree's root. Exits non-zero on any disagreement.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "envelope", "testdata"))
from decrypt_v1 import FormatError, decrypt, hkdf, parse_plain_keyring, xchacha_open  # noqa: E402
from cryptography.exceptions import InvalidTag  # noqa: E402

SEGMENT = 64 * 65536  # section 17: 64 chunks of 64 KiB


def padme(n):  # STORAGE.md section 5
    if n < 2:
        return n
    e = n.bit_length() - 1
    s = e.bit_length()
    if e < s:
        return n
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


class Store:
    def __init__(self, d):
        root = base64.b64decode(open(f"{d}/rootkey").read().strip())
        self.keks = parse_plain_keyring(open(f"{d}/keyring", "rb").read())
        self.k_rec = hkdf(root, b"", b"securefsd v2 record", 32)
        self.k_name = hkdf(root, b"", b"securefsd v2 name", 32)
        self.recs = {}
        for line in open(f"{d}/records"):
            k, v = line.split()
            self.recs[bytes.fromhex(k)] = base64.b64decode(v)
        self.blobs = f"{d}/blobs"
        self.pad = self.get(b"s", b"pad") == "true"

    def raw(self, kind, key):
        sk = kind + key
        if sk not in self.recs:
            raise FormatError("ErrAuth")  # section 17: a layout names it
        sealed = self.recs[sk]
        try:
            return xchacha_open(self.k_rec, sealed[:24], sealed[24:], b"securefsd v2 record " + sk)
        except InvalidTag:
            raise FormatError("ErrAuth")

    def get(self, kind, key):
        return json.loads(self.raw(kind, key))

    def namekey(self, parent, name):
        msg = struct.pack(">I", len(parent)) + parent + name.encode()
        return hmac.new(self.k_name, msg, hashlib.sha256).digest()[:16]

    def resolve(self, tree, path):
        t = self.get(b"t", self.namekey(b"", "tree " + tree))
        if t["n"] != tree:
            raise FormatError("ErrAuth")
        ino = bytes(t["r"])
        if path == ".":
            return ino
        for el in path.split("/"):
            d = self.get(b"d", ino + self.namekey(ino, el))
            if d["n"] != el:
                raise FormatError("ErrAuth")
            ino = bytes(d["i"])
        return ino

    def listdir(self, ino):
        names = []
        for sk in self.recs:
            if sk[:1] == b"d" and sk[1:17] == ino:
                d = self.get(b"d", sk[1:])
                if sk[1:] != ino + self.namekey(ino, d["n"]):
                    raise FormatError("ErrAuth")
                names.append(d["n"])
        return sorted(names)

    def read(self, ino):
        inode = self.get(b"i", ino)
        c = inode["c"]
        size, segs = c["Size"], c["Segs"] or []
        if inode["k"] != "f" or len(segs) != (size + SEGMENT - 1) // SEGMENT:
            raise FormatError("ErrLayout")
        out = bytearray()
        for i, ref in enumerate(segs):
            if ref.get("InIndex"):
                data = self.raw(b"b", bytes(ref["Blob"]))  # section 17: kept in the index
            else:
                blob = bytes(ref["Blob"]).hex()
                data = open(f"{self.blobs}/{blob[:2]}/{blob}", "rb").read()
            binding = b"securefsd v2 blob " + ino + struct.pack(">QI", ref["Gen"], i)
            pt = decrypt(data, self.keks, binding)
            want = min(SEGMENT, size - i * SEGMENT)
            stored = padme(want) if self.pad and i == len(segs) - 1 else want
            if len(pt) != stored:
                raise FormatError("ErrLayout")
            out += pt[:want]
        return bytes(out)


def main(d):
    st = Store(d)
    bad = 0
    for line in open(f"{d}/expect"):
        f = line.rstrip("\n").split("\t")
        op, tree, path = f[0], f[1], f[2]
        try:
            ino = st.resolve(tree, path)
            if op == "ls":
                got = "/".join(st.listdir(ino))
                ok = got == f[3]
            else:
                pt = st.read(ino)
                got = f"{len(pt)} {hashlib.sha256(pt).hexdigest()}"
                ok = op == "cat" and got == f"{f[3]} {f[4]}"
        except FormatError as e:
            got = str(e)
            ok = op == "damaged" and got == f[3]
        print(("ok   " if ok else "FAIL ") + line.strip() + ("" if ok else f"  (got {got})"))
        bad += not ok
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1])
