#!/usr/bin/env python3
"""Counts what the soak's platform received (bench/soak.sh) and prints one
table row per scenario. Nothing is assumed: every figure is counted from the
platform's log, the outbox's committed sequence and the stations' confirms.

usage: soak_report.py SCENARIO PLATFORM_LOG FIRST_SEQ-LAST_SEQ[,FROM-TO...] [DEVICE=CONFIRMED_FILE...]
  FIRST_SEQ: the gateway's first sequence (a new data directory starts from the
  clock, docs/uplink.md); LAST_SEQ: highest sequence it committed (meta 'seq'
  of the outbox after its last clean stop); every seq in the ranges was
  committed once. Several ranges when a fresh outbox continued above every id
  reserved before (docs/uplink.md: seq may jump by up to 2^20).
  DEVICE=CONFIRMED_FILE: a station's confirmed values (one a line; a missing
  file is none); a confirm without that value at the platform for DEVICE
  counts as a confirm without a commit."""
import json, os, sys

scenario, plat = sys.argv[1], sys.argv[2]
ranges = [tuple(int(x) for x in r.split("-")) if "-" in r else (1, int(r))
          for r in sys.argv[3].split(",")]
committed_seqs = [q for lo, hi in ranges for q in range(lo, hi + 1)]
confirm_files = dict(a.split("=", 1) for a in sys.argv[4:])
seen = {}          # item id -> times delivered
by_content = {}    # (device, metric/event/alarm state, obs/at, value) -> ids
seqs = set()
alarms = {}        # alarm id -> {state: count}
station_values = {}  # device -> values that reached the platform
for line in open(plat, errors="replace"):
    topic, _, payload = line.rstrip("\n").partition(" ")
    try:
        msg = json.loads(payload)
    except ValueError:
        continue
    if not isinstance(msg, dict) or "items" not in msg:
        continue
    for it in msg["items"]:
        iid = it.get("id")
        seen[iid] = seen.get(iid, 0) + 1
        if isinstance(it.get("seq"), int):
            seqs.add(it["seq"])
        key = (it.get("device"), it.get("metric") or it.get("event") or it.get("state"),
               it.get("obs") or it.get("at"), it.get("value"), it.get("alarm"))
        by_content.setdefault(key, set()).add(iid)
        if msg.get("kind") == "alarms" and seen[iid] == 1:
            a = alarms.setdefault(it.get("alarm"), {})
            a[it.get("state")] = a.get(it.get("state"), 0) + 1
        if it.get("device") in confirm_files and isinstance(it.get("value"), (int, float)):
            station_values.setdefault(it["device"], set()).add(int(it["value"]))

committed = len(committed_seqs)
delivered = len([s for s in committed_seqs if s in seqs])
missing = [s for s in committed_seqs if s not in seqs]
gaps = len(missing)
if missing:
    runs, start = [], missing[0]
    for a, b in zip(missing, missing[1:] + [None]):
        if b != a + 1:
            runs.append("%d-%d" % (start, a) if a != start else str(start))
            start = b
    sys.stderr.write("%s: missing seq %s%s\n" % (scenario, ", ".join(runs[:10]),
                                                 " ..." if len(runs) > 10 else ""))
dup_id = sum(n - 1 for n in seen.values() if n > 1)
dup_content = sum(len(ids) - 1 for ids in by_content.values() if len(ids) > 1)
raised = sum(a.get("raised", 0) for a in alarms.values())
cleared = sum(a.get("cleared", 0) for a in alarms.values())
# An alarm is lost when a raise has no clear, except the one still active at
# the end (the square wave may stop while high); a clear without its raise is
# lost too.
open_alarms = [k for k, a in alarms.items() if a.get("raised") and not a.get("cleared")]
orphan_clears = [k for k, a in alarms.items() if a.get("cleared") and not a.get("raised")]
alarms_lost = max(0, len(open_alarms) - 1) + len(orphan_clears)
nconfirms = confirm_no_commit = 0
for dev, f in sorted(confirm_files.items()):
    confirms = set(int(l) for l in open(f) if l.strip()) if os.path.exists(f) else set()
    lost = sorted(v for v in confirms if v not in station_values.get(dev, set()))
    if lost:
        sys.stderr.write("%s: %s: %d confirmed values never reached the platform: %s\n" % (
            scenario, dev, len(lost), " ".join(map(str, lost[:10]))))
    nconfirms += len(confirms)
    confirm_no_commit += len(lost)
print("| %-12s | %9d | %9d | %5d | %7d | %8d | %6d | %7d | %4d | %8d | %15d |" % (
    scenario, committed, delivered, gaps, dup_id, dup_content, raised, cleared, alarms_lost,
    nconfirms, confirm_no_commit))
