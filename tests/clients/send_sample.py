"""Builds one sample attachment (archives with Python's own zipfile and gzip modules and, for the
encrypted one, Info-ZIP's zip: archivers no one on this project wrote), attaches it to a message and sends it with smtplib; prints the
replies as JSON, for tests/api/smtp.rs.

usage: send_sample.py HOST PORT SAMPLE [RCPT]
SAMPLE: zip_deflate | zip_in_zip | gzip | zip_bomb | encrypted_zip | zip_exe | plain_zip |
        html_smuggling | pdf_openaction | js_attachment | clamav_marker | large_attachment |
        gtube | phishing | hello
(the last three are messages without an attachment)
"""
import gzip
import io
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import zipfile
from email.message import EmailMessage

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def zipped(members, compression=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return out.getvalue()


def bomb():
    """200 MB of zeros in one deflated member, written in pieces so this script stays small."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(200):
                member.write(chunk)
    return out.getvalue()


def encrypted():
    """A password-protected zip, written by Info-ZIP's zip (Debian's `zip`), which encrypts."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "secret.doc"), "wb") as f:
            f.write(b"what the scanner cannot read " * 10)
        subprocess.run(["zip", "-q", "-P", "hunter2", "protected.zip", "secret.doc"], cwd=tmp, check=True)
        with open(os.path.join(tmp, "protected.zip"), "rb") as f:
            return f.read()


SMUGGLING = b"""<html><body><script>
var b = atob("TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA="); var bytes = new Uint8Array(b.length);
for (var i = 0; i < b.length; i++) { bytes[i] = b.charCodeAt(i); }
var blob = new Blob([bytes], {type: "application/octet-stream"});
var a = document.createElement("a"); a.href = window.URL.createObjectURL(blob);
a.download = "invoice.exe"; document.body.appendChild(a); a.click();
</script></body></html>
"""

PDF_JS = b"""%PDF-1.7
1 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >> endobj
2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj
3 0 obj << /Type /Action /S /JavaScript /JS (app.alert('hello');) >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""

SAMPLES = {
    "zip_deflate": lambda: ("invoice.zip", zipped([("readme.txt", b"see inside"), ("eicar.com", EICAR)])),
    "zip_in_zip": lambda: ("outer.zip", zipped([("inner.zip", zipped([("docs/eicar.txt", EICAR)]))])),
    "gzip": lambda: ("report.gz", gzip.compress(EICAR)),
    "zip_bomb": lambda: ("backup.zip", bomb()),
    "encrypted_zip": lambda: ("protected.zip", encrypted()),
    "zip_exe": lambda: ("photos.zip", zipped([("holiday.jpg.exe", b"MZ" + b"\x00" * 200)])),
    "plain_zip": lambda: ("notes.zip", zipped([("notes.txt", b"nothing to see here\n" * 100)])),
    "html_smuggling": lambda: ("invoice.html", SMUGGLING),
    "pdf_openaction": lambda: ("statement.pdf", PDF_JS),
    "js_attachment": lambda: ("update.js", b"WScript.Echo('hello');\n"),
    # A string only the tests' own ClamAV signatures know (tests/fixtures/clamav), deep in a zip.
    "clamav_marker": lambda: ("notes.zip", zipped([("a/b.txt", b"xx MAILSENSOR-CLAMAV-TEST-MARKER xx")])),
    # 1.5 MB, past the StreamMaxLength of the tests' clamd (1 MB); stored (stored, not deflated).
    "large_attachment": lambda: ("archive.zip", zipped([("big.bin", os.urandom(1_500_000))], zipfile.ZIP_STORED)),
}

# Messages without an attachment: (content subtype, body).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
BODIES = {
    "gtube": ("plain", f"Buy now.\n{GTUBE}\n"),
    # The link's text names one site, its target is another: rspamd's PHISHING symbol.
    "phishing": (
        "html",
        '<html><body><p>Your account is locked.</p>'
        '<a href="http://paypa1-login.example/verify">https://www.paypal.com/signin</a></body></html>\n',
    ),
    "hello": ("plain", "Hello Bob, lunch on Friday?\n"),
}

TYPES = {".html": ("text", "html"), ".pdf": ("application", "pdf"), ".js": ("application", "javascript")}


def main() -> None:
    host, port, sample, *rcpt = sys.argv[1:]
    rcpt = rcpt[0] if rcpt else "bob@example.com"
    if sample in BODIES:
        send(host, port, sample, rcpt, body_message(sample, rcpt), {"sample": sample})
        return
    filename, data = SAMPLES[sample]()
    maintype, subtype = next((t for ext, t in TYPES.items() if filename.endswith(ext)), ("application", "octet-stream"))
    message = EmailMessage()
    message["From"] = "mallory@example.net"
    message["To"] = rcpt
    message["Subject"] = f"sample {sample}"
    message.set_content("Please see the attachment.")
    if maintype == "text":
        message.add_attachment(data.decode(), subtype=subtype, filename=filename)
    else:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    send(host, port, sample, rcpt, message, {"sample": sample, "attachment_bytes": len(data)})


def body_message(sample, rcpt):
    subtype, body = BODIES[sample]
    message = EmailMessage()
    message["From"] = "PayPal <service@paypa1-secure.example>" if sample == "phishing" else "mallory@example.net"
    message["To"] = rcpt
    message["Subject"] = f"sample {sample}"
    message.set_content(body, subtype=subtype)
    return message


def send(host, port, sample, rcpt, message, result):
    with smtplib.SMTP(host, int(port), timeout=60) as smtp:
        try:
            refused = smtp.send_message(message, "mallory@example.net", [rcpt])
            result["data"] = 250
            result["refused"] = {k: v[0] for k, v in refused.items()}
        except smtplib.SMTPException as e:
            result["error"] = repr(e)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
