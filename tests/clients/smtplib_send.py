"""Sends one message with Python's smtplib (a client no one on this project wrote) and prints the
server's replies as JSON, for tests/api/smtp.rs.

usage: smtplib_send.py HOST PORT MAIL_FROM RCPT [RCPT ...]   (message on standard input)
"""
import json
import smtplib
import sys


def main() -> None:
    host, port, mail_from, *rcpts = sys.argv[1:]
    message = sys.stdin.buffer.read()
    result = {}
    with smtplib.SMTP(host, int(port), timeout=30) as smtp:
        code, banner = smtp.ehlo("smtplib.test")
        result["ehlo"] = code
        result["esmtp_features"] = sorted(smtp.esmtp_features)
        result["size_limit"] = int(smtp.esmtp_features.get("size", "0") or 0)
        try:
            refused = smtp.sendmail(mail_from, rcpts, message)
            result["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
            result["data"] = 250
        except smtplib.SMTPRecipientsRefused as e:
            result["refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
            result["data"] = None
        except smtplib.SMTPDataError as e:
            result["data"] = e.smtp_code
            result["data_text"] = e.smtp_error.decode()
        code, _ = smtp.noop()
        result["noop"] = code
    print(json.dumps(result))


if __name__ == "__main__":
    main()
