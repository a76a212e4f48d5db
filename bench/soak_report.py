#!/usr/bin/env python3
"""Counts what the soak's platform received (bench/soak.sh) and prints one
table row per scenario. Nothing is assumed: every figure is counted from the
platform's log, the outbox's committed sequence and the stations' confirms.

usage: soak_report.py SCENARIO PLATFORM_LOG LAST_SEQ [CONFIRMED_FILE...]
  LAST_SEQ: highest sequence the gateway committed (meta 'seq' of the outbox
  after its last clean stop), every seq 1..LAST_SEQ was committed once."""
import json, sys

scenario, plat, last_seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
confirm_files = sys.argv[4:]
seen = {}          # item id -> times delivered
by_content = {}    # (device, metric/event/alarm state, obs/at, value) -> ids
seqs = set()
alarms = {}        # alarm id -> {state: count}
station_values = set()
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
        if it.get("device") == "station-212" and it.get("value") is not None and seen[iid] == 1:
            station_values.add(int(it["value"]))

committed = last_seq
delivered = len([s for s in seqs if s <= last_seq])
missing = [s for s in range(1, last_seq + 1) if s not in seqs]
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
confirms = set()
for f in confirm_files:
    for l in open(f):
        if l.strip():
            confirms.add(int(l))
confirm_no_commit = len([v for v in confirms if v not in station_values])
print("| %-12s | %9d | %9d | %5d | %7d | %8d | %6d | %7d | %4d | %8d | %15d |" % (
    scenario, committed, delivered, gaps, dup_id, dup_content, raised, cleared, alarms_lost,
    len(confirms), confirm_no_commit))
