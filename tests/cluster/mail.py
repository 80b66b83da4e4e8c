#!/usr/bin/env python3
"""The two ends of a mail's path in scripts/cluster-test.

  send   the customer's users: submit numbered messages to the customer's MTA over SMTP (run inside
         the MTA's namespace, against Postfix on 127.0.0.1:25). Each message has a unique
         Message-ID, <TAG.N.RUN@mta.cluster.test>, so stored copies can be counted.
  count  the security officer: read every received message of the tenant back from the API
         (paginated) and count this run's by Message-ID, as JSON.
"""
import argparse
import email.utils
import json
import smtplib
import sys
import time
import urllib.request


def send(args: argparse.Namespace) -> None:
    smtp = smtplib.SMTP(args.host, args.port, timeout=30)
    smtp.ehlo("injector.mta.cluster.test")
    started = time.monotonic()
    for n in range(1, args.count + 1):
        if args.rate:
            # Paced: message n leaves at (n-1)/rate seconds, however long each submission took.
            delay = started + (n - 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        message_id = f"{args.tag}.{n}.{args.run}@mta.cluster.test"
        body = (
            f"From: Cluster test <{args.sender}>\r\n"
            f"To: <{args.to}>\r\n"
            f"Subject: cluster test {args.tag} #{n}\r\n"
            f"Message-ID: <{message_id}>\r\n"
            f"Date: {email.utils.formatdate()}\r\n"
            "\r\n"
            f"Message {n} of {args.count} of case {args.tag}.\r\n"
        )
        smtp.sendmail(args.sender, [args.to], body.encode())
    smtp.quit()


def count(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"}
    total, ids, workers = 0, set(), {}
    cursor = None
    while True:
        url = f"{args.api}/v1/tenants/{args.tenant}/messages?limit=500"
        if cursor:
            url += f"&cursor={cursor}"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            page = json.load(r)
        for m in page["items"]:
            mid = (m["headers"].get("message_id") or "").strip("<>")
            if f".{args.run}@" not in mid:
                continue
            total += 1
            ids.add(mid)
            worker = m["envelope"]["worker"]
            workers[worker] = workers.get(worker, 0) + 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    json.dump({"stored": total, "distinct": len(ids), "duplicates": total - len(ids), "workers": workers},
              sys.stdout, sort_keys=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="submit numbered messages to an MTA")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=25)
    s.add_argument("--tag", required=True, help="case tag, part of every Message-ID")
    s.add_argument("--run", required=True, help="run id, part of every Message-ID")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=float, default=0, help="messages per second (0: as fast as possible)")
    s.add_argument("--sender", default="qa@mta.cluster.test")
    s.add_argument("--to", default="rcpt@customer.test")
    c = sub.add_parser("count", help="count this run's messages the API stored")
    c.add_argument("--api", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--tenant", required=True)
    c.add_argument("--run", required=True)
    args = parser.parse_args()
    {"send": send, "count": count}[args.command](args)


if __name__ == "__main__":
    main()
