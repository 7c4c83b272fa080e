#!/usr/bin/env bash
# The 10-node linear workflow, durable on SQLite, in loomiq and in LangGraph (StateGraph on
# AsyncSqliteSaver), alternated in the same minutes; the last line is the summary (JSON):
#   bash bench/bench_workflow_peers.sh [ROUNDS]        (default 3 rounds)
# LangGraph runs in its own virtualenv ($PEERS_VENV, default /tmp/peers-venv/langgraphdurable, built
# from /work/shared/bench-peers/requirements-langgraphdurable.txt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
VENV=${PEERS_VENV:-/tmp/peers-venv/langgraphdurable}
REQ=${PEERS_REQ:-/work/shared/bench-peers/requirements-langgraphdurable.txt}
LOOMIQ_PY=${LOOMIQ_PY:-.venv/bin/python}
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
fi
export LANGCHAIN_TRACING_V2=false LANGSMITH_TRACING=false PYTHONHASHSEED=0
OUT=$(mktemp)
for ((r = 1; r <= ROUNDS; r++)); do
  "$VENV/bin/python" bench/workflow_peers/langgraph_10.py --reps 20 | tee -a "$OUT"
  "$LOOMIQ_PY" bench/bench_workflow_durable.py --reps 10 --parked 10 | tee -a "$OUT"
done
"$LOOMIQ_PY" - "$OUT" <<'PY'
import json, statistics, sys
text, rows, at, decoder = open(sys.argv[1]).read(), [], 0, json.JSONDecoder()
while (at := text.find("{", at)) >= 0:  # one object per bench, on one line or indented
    row, at = decoder.raw_decode(text, at)
    rows.append(row)
lg = [r["linear_workflow_s"] for r in rows if r["bench"] == "workflow_peer"]
lq = [r["linear_workflow_s"] for r in rows if r["bench"] == "workflow_durable"]
chain = [r["task_chain_s"] for r in rows if r["bench"] == "workflow_durable"]
print(json.dumps({"bench": "workflow_peers_summary", "rounds": len(lq),
                  "langgraph_10_s": statistics.median(lg), "loomiq_10_s": statistics.median(lq),
                  "loomiq_chain_10_s": statistics.median(chain),
                  "langgraph_over_loomiq": round(statistics.median(lg) / statistics.median(lq), 2),
                  "target": "langgraph_over_loomiq >= 10"}))
PY
rm -f "$OUT"
