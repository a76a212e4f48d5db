#!/bin/sh
# Checks the include graph of the tree against the layer picture of docs/design.md:
#
#   base  <-  rules, adapters, protocols, gateway      sim is a peer that includes only sim/
#
# It reads every `#include "..."` line of the C files below the source folders and
#   1. fails on an include cycle between files (a header that reaches itself), printing it;
#   2. checks each rule of the table below: a layer may include only the layers it lists.
#      A rule marked `enforce` fails the check; a rule marked `report` is a known violation:
#      its offending lines are counted and printed, and the check still passes;
#   3. reports module cycles (x.c and x.h taken as one module x), e.g. core <-> alarms,
#      under the rule named `modules` (enforce or report like the others). A private
#      header `x_internal.h` belongs to module x when x.c exists; otherwise it is shared by
#      several modules and left out here.
# With --graph it prints instead the folder-level picture: which layer includes which,
# with the number of include lines, and marks the edges that break a rule.
#
# To flip a rule from reported to enforced (once its violations are gone): change `report`
# to `enforce` on its line in RULES below and run `make check-deps`; it must say 0 for it.
#
# Layers are matched by path prefix, first match wins.
# Exit: 0 clean (reported rules may have violations), 1 an enforced rule or a file cycle.
set -eu
cd "$(dirname "$0")/.."

LAYERS='
base      base/
coreapi   gateway/core.h gateway/device.h gateway/config.h protocols/protocol.h
coreapi   gateway/store_conf.h gateway/uplink_conf.h gateway/protect_conf.h
coreapi   gateway/localpub_conf.h gateway/http_conf.h
rules     rules/
adapters  adapters/
protocols protocols/
gateway   gateway/
simtests  tests/unit/test_sim
sim       sim/
tests     tests/
bench     bench/
'
# coreapi: what protocols may see of the core: gateway/core.h (gw_core is opaque there; its
# internals are in gateway/core_internal.h), the config types (gateway/config.h and the
# sections it holds, gateway/*_conf.h) and the protocol descriptor.

# rule      status   layer may include only these layers (itself is always allowed)
RULES='
base        enforce  base
rules       enforce  base
sim         enforce  sim
simtests    enforce  sim
adapters    enforce  base
protocols   enforce  base adapters coreapi
coreapi     enforce  base
gateway     enforce  base coreapi rules adapters protocols
modules     enforce  -
'

MODE=check
case "${1:-}" in
--graph) MODE=graph ;;
'') ;;
*)
    echo "usage: scripts/check-deps.sh [--graph]" >&2
    exit 2
    ;;
esac

FILES=$(find base gateway protocols adapters rules sim tests bench -name '*.[ch]' 2>/dev/null | sort)
# One line per include: "from to". Paths are taken from the root (-I.); a name that is
# not a file there is tried next to the including file; generated files are skipped.
EDGES=$(for f in $FILES; do
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | while read -r inc; do
        if [ -f "$inc" ]; then
            echo "$f $inc"
        elif [ -f "$(dirname "$f")/$inc" ]; then
            echo "$f $(dirname "$f")/$inc"
        fi
    done
done)

printf '%s\n' "$EDGES" | awk -v mode="$MODE" -v layers="$LAYERS" -v rules="$RULES" '
function layer_of(p,   i, k) {
    for (i = 1; i <= nl; i++)
        for (k = 1; k <= npat[i]; k++)
            if (index(p, pat[i, k]) == 1)
                return lname[i];
    return "other";
}
function module_of(p,   q) {
    # x_internal.h belongs to module x when x.c exists (gateway/core_internal.h belongs to the core);
    # otherwise it is shared by several modules and left out of module cycles (see below).
    if (p ~ /_internal\.h$/) {
        q = p; sub(/_internal\.h$/, "", q);
        if (system("test -f " q ".c") == 0)
            return q;
    }
    sub(/\.[ch]$/, "", p);
    return p;
}
function shared_internal(p) {
    return p ~ /_internal\.h$/ && module_of(p) ~ /_internal$/;
}
# Tarjan: prints every strongly connected set of more than one node of graph g.
function scc(g, v,   i, w, comp, n) {
    idx[g, v] = low[g, v] = counter++;
    stk[++sp] = v;
    on[g, v] = 1;
    for (i = 1; i <= deg[g, v]; i++) {
        w = adj[g, v, i];
        if (!((g, w) in idx)) {
            scc(g, w);
            if (low[g, w] < low[g, v])
                low[g, v] = low[g, w];
        } else if (on[g, w] && idx[g, w] < low[g, v]) {
            low[g, v] = idx[g, w];
        }
    }
    if (low[g, v] == idx[g, v]) {
        comp = "";
        n = 0;
        do {
            w = stk[sp--];
            on[g, w] = 0;
            comp = w (n ? " " comp : "");
            member[g, w] = ncyc[g] + 1;
            n++;
        } while (w != v);
        if (n > 1)
            cyc[g, ++ncyc[g]] = comp;
    }
}
function add_edge(g, a, b) {
    if ((g, a, b) in seen)
        return;
    seen[g, a, b] = 1;
    adj[g, a, ++deg[g, a]] = b;
    if (!((g, a) in isnode)) {
        isnode[g, a] = 1;
        nodes[g, ++nn[g]] = a;
    }
    if (!((g, b) in isnode)) {
        isnode[g, b] = 1;
        nodes[g, ++nn[g]] = b;
    }
}
# Prints the cycles of graph g with the edges inside each; returns how many.
function cycles(g, label,   i, k, m, c, e, parts, np, inside) {
    for (i = 1; i <= nn[g]; i++)
        if (!((g, nodes[g, i]) in idx))
            scc(g, nodes[g, i]);
    for (c = 1; c <= ncyc[g]; c++) {
        np = split(cyc[g, c], parts, " ");
        delete inside;
        for (k = 1; k <= np; k++)
            inside[parts[k]] = 1;
        e = "";
        for (k = 1; k <= np; k++)
            for (m = 1; m <= deg[g, parts[k]]; m++)
                if (adj[g, parts[k], m] in inside)
                    e = e "\n      " parts[k] " -> " adj[g, parts[k], m];
        printf "  %s cycle: %s%s\n", label, cyc[g, c], e;
    }
    return ncyc[g];
}
BEGIN {
    n = split(layers, L, "\n");
    for (i = 1; i <= n; i++) {
        if (split(L[i], w, " ") < 2)
            continue;
        # A layer name repeated on the next line continues its list of paths.
        if (!nl || lname[nl] != w[1]) {
            lname[++nl] = w[1];
            npat[nl] = 0;
        }
        for (k = 2; k in w; k++)
            pat[nl, ++npat[nl]] = w[k];
    }
    n = split(rules, R, "\n");
    for (i = 1; i <= n; i++) {
        if (split(R[i], w, " ") < 3)
            continue;
        rname[++nr] = w[1];
        rstat[w[1]] = w[2];
        allowed[w[1], w[1]] = 1;
        for (k = 3; k in w; k++)
            allowed[w[1], w[k]] = 1;
        ruled[w[1]] = 1;
    }
}
NF == 2 {
    a = $1; b = $2;
    la = layer_of(a); lb = layer_of(b);
    add_edge("file", a, b);
    if (module_of(a) != module_of(b) && !shared_internal(a) && !shared_internal(b))
        add_edge("mod", module_of(a), module_of(b));
    lines[la, lb]++;
    if (!((la, lb) in haspair)) {
        haspair[la, lb] = 1;
        pairs[++np] = la SUBSEP lb;
    }
    if ((la in ruled) && !((la, lb) in allowed)) {
        bad[la]++;
        badlines[la] = badlines[la] "\n      " a " includes " b;
    }
}
END {
    if (mode == "graph") {
        print "layer -> layer (include lines); ! marks an edge a rule forbids";
        for (i = 1; i <= nl; i++)
            for (j = 1; j <= nl; j++) {
                la = lname[i]; lb = lname[j];
                if (la == lb || !((la, lb) in lines))
                    continue;
                mark = ((la in ruled) && !((la, lb) in allowed)) ? "  ! " rstat[la] : "";
                printf "  %-9s -> %-9s %4d%s\n", la, lb, lines[la, lb], mark;
            }
        exit 0;
    }
    fail = 0;
    nfc = cycles("file", "file");
    if (nfc) {
        print "FAIL file cycles [enforce]: " nfc;
        fail = 1;
    } else {
        print "ok    file cycles [enforce]: 0";
    }
    for (i = 1; i <= nr; i++) {
        r = rname[i];
        if (r == "modules") {
            cnt = cycles("mod", "module");
            what = "module cycles";
        } else {
            cnt = bad[r] + 0;
            what = r " -> " r;
            for (j = 1; j <= nl; j++)
                if ((r, lname[j]) in allowed && lname[j] != r)
                    what = what "," lname[j];
            what = what " only";
        }
        if (cnt == 0)
            tag = "ok  ";
        else if (rstat[r] == "enforce")
            tag = "FAIL";
        else
            tag = "known";
        printf "%-5s %s [%s]: %d%s\n", tag, what, rstat[r], cnt, r == "modules" ? "" : badlines[r];
        if (cnt && rstat[r] == "enforce")
            fail = 1;
    }
    exit fail;
}'
