#!/usr/bin/env python3
"""Independent decryptor for securefsd format v1, written from docs/FORMAT.md
alone (not from the Go code), used to check that the spec is complete.

Usage: decrypt_v1.py VECTOR... : decrypts each known-answer vector and checks
its "expect"/"error"/"sha256" fields; exits non-zero on any disagreement.
       decrypt_v1.py --store DIR : decrypts every file of a golden store (its
plain "keyring" file, MANIFEST lines "name size sha256 [binding-base64]") and
checks size and SHA-256; a bound file must also fail (ErrAuth) unbound.
Needs the "cryptography" package (ChaCha20-Poly1305, AES-GCM, AES-ECB);
HChaCha20 and the XAES-256-GCM key derivation are here.
"""
import base64
import hashlib
import hmac
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

CS, H, O = 65536, 208, 40


class FormatError(Exception):
    """Carries the name of the sentinel error (ErrAuth, ErrFormat, ...)."""


def hkdf(ikm, salt, info, n):
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:n]


def _qr(s, a, b, c, d):
    def rotl(v, n):
        return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_open(key, nonce, ct, aad):
    """XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03). Raises InvalidTag."""
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0\0\0\0" + nonce[16:], ct, aad)


def aes_block(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def xaes_open(key, nonce, ct, aad):
    """XAES-256-GCM (c2sp.org/XAES-256-GCM). Raises InvalidTag."""
    L = int.from_bytes(aes_block(key, bytes(16)), "big")
    k1 = (L << 1) & ((1 << 128) - 1)
    if L >> 127:
        k1 ^= 0x87
    kx = b""
    for i in (1, 2):
        m = int.from_bytes(bytes([0, i, 0x58, 0]) + nonce[:12], "big") ^ k1
        kx += aes_block(key, m.to_bytes(16, "big"))
    return AESGCM(kx).decrypt(nonce[12:], ct, aad)


# FORMAT.md section 3: content AEADs by id.
AEADS = {1: xchacha_open, 2: xaes_open}


def kek_id(kek):
    return struct.unpack(">I", hkdf(kek, b"", b"securefsd/v1 kek id", 4))[0]


def plaintext_size(c):  # FORMAT.md section 6
    if c < H + O or c > H + (2**60 // CS) * O + 2**60:
        raise FormatError("ErrFormat")
    q, r = divmod(c - H, CS + O)
    if r == 0:
        return q * CS
    if r < O or (r == O and q > 0):
        raise FormatError("ErrFormat")
    return q * CS + r - O


def decrypt(data, keks, binding=b""):
    size = plaintext_size(len(data))
    hdr = data[:H]
    if hdr[:8] != b"securefs" or hdr[8] != 1 or hdr[9] not in AEADS or hdr[10] != 16:
        raise FormatError("ErrVersion")
    if any(hdr[11:16]):
        raise FormatError("ErrFormat")
    fixed, file_id = hdr[:48], hdr[16:48]
    slots = []
    for i in (0, 1):
        raw = hdr[48 + 80 * i:128 + 80 * i]
        gen, kid = struct.unpack(">II", raw[:8])
        if gen == 0:
            if any(raw):
                raise FormatError("ErrFormat")
            continue
        if kid == 0:
            raise FormatError("ErrFormat")
        slots.append((i, gen, kid, raw[8:32], raw[32:80]))
    if not slots or (len(slots) == 2 and slots[0][1] == slots[1][1]):
        raise FormatError("ErrFormat")
    best = None
    for i, gen, kid, nonce, wrapped in slots:
        if kid not in keks:
            continue
        wrap_key = hkdf(keks[kid], b"", b"securefsd/v1 kek wrap", 32)
        # FORMAT.md 5.2/5.5: the binding context ends the slot AAD.
        aad = fixed + bytes([i]) + struct.pack(">II", gen, kid) + binding
        try:
            dek = xchacha_open(wrap_key, nonce, wrapped, aad)
        except InvalidTag:
            raise FormatError("ErrAuth")
        if best is None or gen > best[0]:
            best = (gen, dek)
    if best is None:
        raise FormatError("ErrUnknownKey")
    aead_id = hdr[9]
    chunk_open = AEADS[aead_id]
    chunk_key = hkdf(best[1], file_id, b"securefsd/v1 chunk" + bytes([aead_id]), 32)
    n = max(1, -(-size // CS))
    out = bytearray()
    for i in range(n):
        ln = min(CS, size - i * CS)
        off = H + i * (CS + O)
        c = data[off:off + ln + O]
        if len(c) < ln + O:
            raise FormatError("ErrTruncated")
        final = i == n - 1

        def try_open(flag):
            aad = struct.pack(">Q", i) + bytes([flag]) + file_id
            return chunk_open(chunk_key, c[:24], c[24:], aad)
        try:
            out += try_open(final)
        except InvalidTag:
            try:
                try_open(not final)
            except InvalidTag:
                raise FormatError("ErrAuth")
            raise FormatError("ErrTruncated" if final else "ErrStaleFinal")
    return bytes(out)


def self_check():
    """The C2SP XAES-256-GCM test vectors (MSB(L) = 0 and 1)."""
    n = b"ABCDEFGHIJKLMNOPQRSTUVWX"
    for k, aad, ct in ((1, b"", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"),
                       (3, b"c2sp.org/XAES-256-GCM", "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d")):
        if xaes_open(bytes([k]) * 32, n, bytes.fromhex(ct), aad) != b"XAES-256-GCM":
            raise SystemExit("XAES-256-GCM self-check failed")


def main(paths):
    self_check()
    bad = 0
    for path in paths:
        raw = open(path, "rb").read()
        head, data = raw.split(b"\n\n", 1)
        fields, keks, active = {}, {}, None
        for line in head.decode().split("\n"):
            k, v = line.split(": ", 1)
            if k == "kek":
                kid, b64 = v.split(" ")
                key = base64.b64decode(b64, validate=True)
                if kek_id(key) != int(kid):
                    print(f"{path}: KEK id {kid} does not match its key")
                    bad += 1
                keks[int(kid)] = key
            else:
                fields[k] = v
        try:
            binding = base64.b64decode(fields.get("binding", ""), validate=True)
            pt = decrypt(data, keks, binding)
            got = "success", hashlib.sha256(pt).hexdigest(), len(pt)
        except FormatError as e:
            got = "error", str(e), None
        if fields["expect"] == "success":
            ok = got == ("success", fields["sha256"], int(fields["size"]))
        else:
            ok = got == ("error", fields["error"], None)
        print(f"{'ok  ' if ok else 'FAIL'} {path}: {got[0]} {got[1]}")
        bad += not ok
    return 1 if bad else 0


def parse_plain_keyring(text):  # FORMAT.md section 10, plain encoding
    lines = text.decode().split("\n")
    if lines[0] != "securefsd-keyring v1" or lines[-1] != "":
        raise SystemExit("not a plain keyring")
    keks = {}
    for line in lines[2:-1]:
        tag, kid, b64 = line.split(" ")
        key = base64.b64decode(b64, validate=True)
        if tag != "kek" or kek_id(key) != int(kid):
            raise SystemExit(f"bad keyring line {line!r}")
        keks[int(kid)] = key
    return keks


def check_store(d):
    self_check()
    keks = parse_plain_keyring(open(f"{d}/keyring", "rb").read())
    bad = 0
    for line in open(f"{d}/MANIFEST").read().splitlines():
        f = line.split(" ")
        name, size, digest = f[0], int(f[1]), f[2]
        binding = base64.b64decode(f[3], validate=True) if len(f) > 3 else b""
        data = open(f"{d}/files/{name}", "rb").read()
        try:
            pt = decrypt(data, keks, binding)
            ok = len(pt) == size and hashlib.sha256(pt).hexdigest() == digest
            got = f"success, {len(pt)} bytes"
        except FormatError as e:
            ok, got = False, str(e)
        if ok and binding:
            try:
                decrypt(data, keks)
                ok, got = False, "opened without its binding"
            except FormatError as e:
                ok = str(e) == "ErrAuth"
                got += f"; unbound: {e}"
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--store"]:
        sys.exit(check_store(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
