#!/usr/bin/env python3
"""WAL of one database between two LSNs, for bench/retention.sh.

    retention_wal.py PG_WALDUMP PG_WAL_DIR START_LSN END_LSN DB_OID

pg_current_wal_lsn() before and after measures everything the server wrote meanwhile, other
databases' work included (tests may share the server). This reads the same range with pg_waldump
and keeps the records of DB_OID: those with a block reference in it (rel SPC/DB_OID/REL) or naming
its files (base/DB_OID/...), and every record of a transaction that had one (its commit record,
which carries a DROP TABLE's file removal, for one). Prints JSON:
    {"ok": true, "all": bytes of every record, "db": bytes of DB_OID's, "db_fpi": of which
     full-page images (a record's total length less its main data), "db_records": count,
     "other": bytes of other databases' transactions, "unattributed": server records (checkpoint,
     running transactions) in neither}
or {"ok": false, "error": "..."} when pg_waldump cannot read the range (say its segments were
recycled by a checkpoint meanwhile). Record lengths exclude the WAL page headers, so "all" is
slightly below the LSN difference.
"""
import json
import re
import subprocess
import sys

LINE = re.compile(r"^rmgr: \S+\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+),")
REL = re.compile(r"rel \d+/(\d+)/\d+")
BASE = re.compile(r"base/(\d+)/")


def main() -> None:
    waldump, wal_dir, start, end, db = sys.argv[1:6]
    proc = subprocess.Popen(
        [waldump, "-p", wal_dir, "-s", start, "-e", end],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    records = []  # (rec, tot, xid, db: True/False/None)
    xids_db, xids_other = set(), set()
    for line in proc.stdout:
        m = LINE.match(line)
        if not m:
            continue
        rec, tot, xid = int(m.group(1)), int(m.group(2)), int(m.group(3))
        dbs = set(REL.findall(line)) | set(BASE.findall(line))
        dbs.discard("0")  # shared catalogs
        mine = None
        if db in dbs:
            mine = True
            if xid:
                xids_db.add(xid)
        elif dbs:
            mine = False
            if xid:
                xids_other.add(xid)
        records.append((rec, tot, xid, mine))
    stderr = proc.stderr.read()
    rc = proc.wait()
    if not records:
        print(json.dumps({"ok": False, "error": (stderr.strip() or f"pg_waldump exit {rc}")[:300]}))
        return
    out = {"ok": True, "all": 0, "db": 0, "db_fpi": 0, "db_records": 0, "other": 0, "unattributed": 0}
    for rec, tot, xid, mine in records:
        out["all"] += tot
        if mine or (mine is None and xid in xids_db):
            out["db"] += tot
            out["db_fpi"] += tot - rec
            out["db_records"] += 1
        elif mine is False or xid in xids_other:
            out["other"] += tot
        else:
            out["unattributed"] += tot
    # pg_waldump stops with an error at the end of the WAL written so far; only say so when the
    # range was not read to its end.
    if rc != 0 and "invalid record length" not in stderr and "end of WAL" not in stderr:
        out["warning"] = stderr.strip()[:300]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
