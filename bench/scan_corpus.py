#!/usr/bin/env python3
"""Inputs of bench/scan.sh, generated from a seed (the same seed gives the same bytes):

  scan_corpus.py corpus DIR --count N [--seed S] [--min-bytes B] [--max-bytes B]
      N messages as DIR/msg-00000.eml ...: sizes log-uniform between min and max; plain text,
      text + HTML, attachments (binary and text, base64), a zip, or a zip inside a zip; 1 % of
      them (at least one) carry the test signatures: the marker MAILSENSOR-CLAMAV-TEST-MARKER in
      the text body, and the EICAR test string as an attachment, alone or inside a zip. Prints a
      JSON summary (counts by kind, bytes, which files carry a signature).

  scan_corpus.py rules FILE --count N [--seed S]
      N YARA rules in one file that both YARA-X 1.22 and libyara 4.2 (Debian's `yara`) compile:
      text strings (nocase, wide, fullword), hex strings (wildcards, jumps, alternatives), regular
      expressions with literal atoms of 4+ bytes, and conditions (any / N / all of them, counts,
      offsets, filesize). Two rules match the signature carriers (marker, EICAR), a few match
      common corpus words, the rest look for strings that never occur.
      With --rare (bench/retrohunt.sh): the common-word rules look for rare words instead and
      the zip rule wants a zip of 1,000+ members, so only the two signature rules match (about 1 %
      of the messages) and a retro-hunt over many messages stays under its match cap.
"""
import argparse
import io
import json
import math
import os
import random
import sys
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

MARKER = "MAILSENSOR-CLAMAV-TEST-MARKER"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SYLLABLES = ["ka", "lo", "ve", "xa", "mi", "tor", "qu", "ren", "sal", "po", "de", "nix", "ar", "bel",
             "cun", "dro", "fe", "gil", "hu", "jo", "mar", "no", "pe", "ri", "su", "ta", "vo", "wen"]


def vocabulary(rng, n):
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def text_pool(rng, words, size):
    """About `size` bytes of ASCII prose in lines of at most 76 characters."""
    lines, line, total = [], [], 0
    weights = [1.0 / (i + 1) for i in range(len(words))]  # Zipf-ish: a few words are common
    for w in rng.choices(words, weights=weights, k=size // 6 + 100):
        if sum(map(len, line)) + len(line) + len(w) > 76:
            s = " ".join(line)
            lines.append(s)
            total += len(s) + 1
            line = []
            if total >= size:
                break
        line.append(w)
    return "\n".join(lines) + "\n"


class Corpus:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng, 3000)
        self.pool = text_pool(self.rng, self.words, 1 << 20)

    def text(self, n):
        """n bytes of prose from a random place of the pool, starting at a line."""
        n = max(64, int(n))
        out = []
        while n > 0:
            start = self.pool.find("\n", self.rng.randrange(len(self.pool) - 1)) + 1
            piece = self.pool[start:start + n]
            piece = piece[: piece.rfind("\n") + 1] or piece
            out.append(piece)
            n -= len(piece)
        return "".join(out)

    def binary(self, n):
        return self.rng.randbytes(max(16, int(n)))

    def zip_bytes(self, members):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members:
                # A fixed date: the same seed gives the same bytes.
                info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        return buf.getvalue()

    def members(self, budget):
        """Members for a zip of about `budget` bytes: text compresses, random bytes do not."""
        text_share = self.rng.uniform(0.2, 0.8)
        return [
            (f"notes-{self.rng.randrange(1000)}.txt", self.text(budget * text_share * 4).encode()),
            (f"data-{self.rng.randrange(1000)}.bin", self.binary(budget * (1 - text_share))),
        ]

    def message(self, i, size, kind, signature):
        rng = self.rng
        m = EmailMessage()
        m["From"] = f"{rng.choice(self.words)}@{rng.choice(self.words)}.example.net"
        m["To"] = f"{rng.choice(self.words)}@example.com"
        m["Subject"] = " ".join(rng.choice(self.words) for _ in range(rng.randint(2, 7)))
        m["Date"] = format_datetime(datetime(2025, 1, 1, tzinfo=timezone.utc))
        m["Message-ID"] = f"<bench-{i:05d}.{rng.randrange(1 << 30)}@bench.example.net>"
        # Text of the body: all of the size for text messages, a little of it otherwise.
        payload = max(0, size - 900)
        body_share = 1.0 if kind in ("text", "html") else rng.uniform(0.02, 0.2)
        body = self.text(payload * body_share * (0.5 if kind == "html" else 1.0))
        if signature:
            body = body + f"\nReference: {MARKER}\n"
        m.set_content(body)
        if kind == "html":
            html = "<html><body><p>" + self.text(payload * 0.45).replace("\n", "</p>\n<p>") + "</p></body></html>\n"
            m.add_alternative(html, subtype="html")
        # What is left for attachments, before base64 (4/3).
        left = max(256, (payload - len(body)) * 3 / 4)
        if kind == "attachments":
            n = rng.randint(1, 3)
            for k in range(n):
                share = left / n
                if rng.random() < 0.5:
                    m.add_attachment(self.binary(share), maintype="application", subtype="pdf",
                                     filename=f"document-{k}.pdf")
                else:
                    m.add_attachment(self.text(share).encode(), maintype="application", subtype="octet-stream",
                                     filename=f"report-{k}.csv")
        elif kind == "zip":
            m.add_attachment(self.zip_bytes(self.members(left)), maintype="application", subtype="zip",
                             filename=f"archive-{i}.zip")
        elif kind == "zip-in-zip":
            inner = self.zip_bytes(self.members(left * 0.9))
            outer = self.zip_bytes([("inner.zip", inner), ("readme.txt", self.text(min(4096, left * 0.1)).encode())])
            m.add_attachment(outer, maintype="application", subtype="zip", filename=f"bundle-{i}.zip")
        if signature:
            if i % 2 == 0:
                m.add_attachment(EICAR.encode(), maintype="application", subtype="octet-stream", filename="eicar.com")
            else:
                m.add_attachment(self.zip_bytes([("eicar.com", EICAR.encode())]), maintype="application",
                                 subtype="zip", filename="eicar.zip")
        return m.as_bytes()


def corpus(a):
    random.seed(a.seed)  # the email package draws MIME boundaries from the global generator
    os.makedirs(a.dir, exist_ok=True)
    c = Corpus(a.seed)
    rng = c.rng
    carriers = max(1, round(a.count / 100))
    signed = set(rng.sample(range(a.count), carriers))
    kinds = ["text", "html", "attachments", "zip", "zip-in-zip"]
    weights = [0.30, 0.15, 0.25, 0.18, 0.12]
    summary = {"messages": a.count, "bytes": 0, "kinds": {k: 0 for k in kinds}, "signature_files": [],
               "min_bytes": None, "max_bytes": 0}
    lo, hi = math.log(a.min_bytes), math.log(a.max_bytes)
    for i in range(a.count):
        size = int(math.exp(rng.uniform(lo, hi)))
        kind = rng.choices(kinds, weights)[0]
        data = c.message(i, size, kind, i in signed)
        # The parts' sizes are estimates (headers, base64, deflate): aim again when out of range.
        for _ in range(5):
            if a.min_bytes <= len(data) <= a.max_bytes:
                break
            size = max(256, size + (a.min_bytes - len(data) + 256 if len(data) < a.min_bytes
                                    else a.max_bytes - len(data) - 4096))
            data = c.message(i, size, kind, i in signed)
        name = f"msg-{i:05d}.eml"
        with open(os.path.join(a.dir, name), "wb") as f:
            f.write(data)
        summary["bytes"] += len(data)
        summary["kinds"][kind] += 1
        summary["min_bytes"] = len(data) if summary["min_bytes"] is None else min(summary["min_bytes"], len(data))
        summary["max_bytes"] = max(summary["max_bytes"], len(data))
        if i in signed:
            summary["signature_files"].append(name)
    json.dump(summary, sys.stdout)
    print()


# ---------------------------------------------------------------- rules
def yara_text(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rules(a):
    rng = random.Random(a.seed + 1)
    corpus_words = vocabulary(random.Random(a.seed), 3000)  # the corpus's own words, same seed
    common = corpus_words[:40]  # the most frequent ones (Zipf weights above)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def rare_word(lo=8, hi=16):
        return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))

    def text_string():
        # (With --rare, the 4 % of phrases of common corpus words become rare words too.)
        common_phrase = rng.random() < 0.04
        word = rng.choice(common) + " " + rng.choice(corpus_words) if common_phrase and not a.rare else rare_word()
        mod = rng.choices(["", " nocase", " wide", " ascii wide", " fullword", " nocase ascii wide"],
                          [40, 20, 10, 10, 10, 10])[0]
        return yara_text(word) + mod

    def hex_string():
        def run(n):
            return " ".join(f"{rng.randrange(256):02X}" for _ in range(n))
        parts = [run(rng.randint(4, 6))]
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.35:
                parts.append("??")
            elif op < 0.65:
                lo = rng.randint(0, 4)
                parts.append(f"[{lo}-{lo + rng.randint(1, 8)}]")
            else:
                parts.append(f"( {run(2)} | {run(2)} )")
            parts.append(run(rng.randint(2, 4)))
        return "{ " + " ".join(parts) + " }"

    def regex_string():
        w1, w2 = rare_word(4, 8), rare_word(4, 8)
        shape = rng.randrange(5)
        if shape == 0:
            r = f"/{w1}[0-9]{{2,4}}{w2}/"
        elif shape == 1:
            r = f"/{w1}[a-z0-9_]{{1,8}}{w2}/"
        elif shape == 2:
            r = f"/{w1}\\s+\\d{{2,6}}/"
        elif shape == 3:
            r = f"/https?:\\/\\/[a-z0-9.-]{{3,30}}\\/{w1}/"
        else:
            r = f"/({w1}|{w2})-[A-F0-9]{{8}}/"
        return r + rng.choices(["", " nocase", " wide", " ascii wide"], [60, 25, 7, 8])[0]

    out = [
        "// Generated by bench/scan_corpus.py for bench/scan.sh: the same rules for YARA-X, yara and",
        f"// yarac (libyara 4.2). Seed {a.seed}, {a.count} rules.",
        "",
        "rule bench_sig_marker {",
        '    meta: severity = "malicious"',
        f"    strings: $m = {yara_text(MARKER)}",
        "    condition: $m",
        "}",
        "rule bench_sig_eicar {",
        '    meta: severity = "malicious"',
        f"    strings: $e = {yara_text(EICAR)}",
        "    condition: $e",
        "}",
        "rule bench_zip_attachment {",
        '    strings: $ct = "Content-Type: application/zip" nocase',
        "             $pk = { 50 4B 03 04 ?? 00 }",
        # With --rare: only a zip of more than 1,000 members (none in the corpus), not every zip.
        "    condition: " + ("$ct and #pk > 1000" if a.rare else "any of them"),
        "}",
    ]
    made = 3
    while made < a.count:
        n = rng.randint(1, 4)
        kinds = rng.choices(["text", "hex", "regex"], [55, 25, 20], k=n)
        strings = []
        for k, kind in enumerate(kinds):
            value = {"text": text_string, "hex": hex_string, "regex": regex_string}[kind]()
            strings.append(f"$s{k} = {value}")
        choices = ["any of them", "any of them and filesize < 1MB", "#s0 > 2", "$s0 in (0..65536)",
                   "any of ($s*) and filesize > 8KB"]
        if n >= 2:
            choices += ["2 of them", "all of them", "$s0 and (" + " or ".join(f"$s{k}" for k in range(1, n)) + ")",
                        "for any of ($s*) : (# > 1)"]
        condition = rng.choice(choices)
        if condition.startswith("#s0") or condition.startswith("$s0 in"):
            condition += " or any of them" if n > 1 else ""
        tags = " : bench" + (" spam" if rng.random() < 0.2 else "")
        severity = rng.choice(["suspicious", "spam", "malicious"])
        out.append(f"rule bench_{made:04d}{tags} {{")
        out.append(f'    meta: severity = "{severity}"')
        out.append("    strings:")
        out.extend(f"        {s}" for s in strings)
        out.append(f"    condition: {condition}")
        out.append("}")
        made += 1
    with open(a.file, "w") as f:
        f.write("\n".join(out) + "\n")
    print(json.dumps({"rules": made, "file": a.file, "bytes": os.path.getsize(a.file)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("dir")
    c.add_argument("--count", type=int, default=500)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--min-bytes", type=int, default=2048)
    c.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024)
    r = sub.add_parser("rules")
    r.add_argument("file")
    r.add_argument("--count", type=int, default=1000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--rare", action="store_true",
                   help="rules a retro-hunt would run: none that matches common corpus words or every zip")
    a = p.parse_args()
    corpus(a) if a.cmd == "corpus" else rules(a)


if __name__ == "__main__":
    main()
