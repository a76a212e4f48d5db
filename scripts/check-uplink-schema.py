#!/usr/bin/python3
"""Validates uplink JSON against docs/uplink.schema.json (JSON Schema 2020-12,
Debian's python3-jsonschema).

  check-uplink-schema.py --docs docs/uplink.md
      every ```json block of the document: a whole message (it has "v") against
      the schema, an item against its definition (chosen by its key field)
  check-uplink-schema.py --capture FILE [--expect KIND=N ...]
      every line "<topic> <payload>" (as `sim run --capture` writes them): the
      payload against the schema; an empty payload is valid only on
      .../devices/<id> (a removed device's retained message cleared).
      --expect KIND=N fails unless at least N messages of KIND (readings,
      events, alarms, forecasts, device, inventory, status) were seen;
      --expect FIELD@KIND=N the same for items of KIND carrying FIELD.

Prints one line per failure and a summary; exits 1 on any failure."""
import json
import re
import sys

from jsonschema import Draft202012Validator

SCHEMA = "docs/uplink.schema.json"


def item_def(doc):
    for key, name in (("alarm", "alarm"), ("forecast", "forecast"), ("event", "event"),
                      ("quality", "reading")):
        if key in doc:
            return name
    return None


def main(argv):
    schema = json.load(open(SCHEMA, encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    whole = Draft202012Validator(schema)
    parts = {}
    for name in ("reading", "event", "alarm", "forecast", "batch", "device", "inventory",
                 "status"):
        sub = dict(schema)
        sub.pop("oneOf", None)
        sub["$ref"] = "#/$defs/" + name
        parts[name] = Draft202012Validator(sub)
    failures = 0
    seen = {}
    fields = {}

    def check(where, doc, validator):
        nonlocal failures
        errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errs[:3]:
            print("%s: %s at %s" % (where, e.message[:300], "/".join(map(str, e.path))))
        if errs:
            failures += 1
        return not errs

    args = argv[1:]
    expect = []
    if "--expect" in args:
        while "--expect" in args:
            i = args.index("--expect")
            expect.append(args[i + 1])
            del args[i:i + 2]
    if len(args) != 2 or args[0] not in ("--docs", "--capture"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, path = args
    n = 0
    if mode == "--docs":
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"```json\n(.*?)```", text, re.S):
            n += 1
            line = text.count("\n", 0, m.start()) + 2
            where = "%s:%d" % (path, line)
            try:
                doc = json.loads(m.group(1))
            except ValueError as e:
                print("%s: not JSON: %s" % (where, e))
                failures += 1
                continue
            if "v" in doc:
                k = doc.get("kind", "status")
                if check(where, doc, parts.get(k if k in parts else "batch", whole)):
                    check(where, doc, whole)
                seen[doc.get("kind", "status")] = seen.get(doc.get("kind", "status"), 0) + 1
            elif item_def(doc):
                check(where, doc, parts[item_def(doc)])
                seen[item_def(doc)] = seen.get(item_def(doc), 0) + 1
            else:
                print("%s: neither a message nor an item" % where)
                failures += 1
    else:
        for ln, line in enumerate(open(path, encoding="utf-8", errors="strict"), 1):
            line = line.rstrip("\n")
            topic, _, payload = line.partition(" ")
            where = "%s:%d %s" % (path, ln, topic)
            n += 1
            if payload == "":
                if "/devices/" not in topic:
                    print("%s: empty payload" % where)
                    failures += 1
                seen["cleared"] = seen.get("cleared", 0) + 1
                continue
            try:
                doc = json.loads(payload)
            except ValueError as e:
                print("%s: not JSON: %s" % (where, e))
                failures += 1
                continue
            kind = doc.get("kind", "status") if isinstance(doc, dict) else "?"
            # The message's own definition gives errors that name the field.
            if check(where, doc, parts.get(kind if kind in parts else "batch", whole)):
                check(where, doc, whole)
            seen[kind] = seen.get(kind, 0) + 1
            for it in doc.get("items", []) if isinstance(doc, dict) else []:
                for k in it:
                    fields[(k, kind)] = fields.get((k, kind), 0) + 1
    for e in expect:
        what, _, want = e.partition("=")
        if "@" in what:
            field, _, kind = what.partition("@")
            got = fields.get((field, kind), 0)
        else:
            got = seen.get(what, 0)
        if got < int(want):
            print("expected at least %s of %s, got %d" % (want, what, got))
            failures += 1
    summary = ", ".join("%s %d" % kv for kv in sorted(seen.items()))
    print("%s: %d documents (%s), %d failed" % (path, n, summary, failures))
    return 1 if failures or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
