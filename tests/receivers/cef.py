"""Parses the CEF records rsyslog wrote (one per line) with `pycef` (PyPI) and prints them as a
JSON list, for the alert tests to check field by field.

    python3 cef.py FILE
"""
import json
import sys

import pycef

records = []
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        line = line.strip()
        if line:
            records.append(pycef.parse(line[line.index("CEF:"):]))
print(json.dumps(records))
