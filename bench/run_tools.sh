#!/usr/bin/env bash
# The tools benchmarks of issue 11, beside their floors in the same minutes:
#   1. bench_tools.py: loomiq's tool loop per tool call against a plain-asyncio floor (same process);
#   2. the tool workload (one model turn with two parallel tool calls, then a final turn) through the
#      floor, loomiq, Pydantic AI and the OpenAI Agents SDK (bench/tools_peers/), alternating, each
#      repetition a fresh process. The peers run in the virtualenvs of shared/bench-peers (built from
#      its pinned requirements-pydanticai.txt / requirements-openaiagents.txt on first use, a few
#      minutes, in PEERS_VENV_ROOT, the same place and marker its run_all.sh uses).
#
#   bash bench/run_tools.sh                  # REPS=3
#   REPS=1 RUNS=300 bash bench/run_tools.sh  # quick
#
# Knobs: REPS (default 3), RUNS (tool-workload runs per process, default 2000), PEERS_DIR (default
# <repo>/../shared/bench-peers), PEERS_VENV_ROOT (default /tmp/peers-venv), LOOMIQ_PYTHON (default
# <repo>/.venv/bin/python), PYTHON (for the floor, default python3), BENCH_RESULTS (default bench/results).
# Prints the summary JSON (also written next to the results as <stamp>.tools.summary.json).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
if [[ -z "${PEERS_DIR:-}" ]]; then  # beside the repository, or beside a worktree's parent
  PEERS_DIR=$REPO/../shared/bench-peers
  [[ -d $PEERS_DIR ]] || PEERS_DIR=$REPO/../../shared/bench-peers
fi
PEERS_DIR=$(cd "$PEERS_DIR" && pwd)
VENV_ROOT=${PEERS_VENV_ROOT:-/tmp/peers-venv}
REPS=${REPS:-3}
RUNS=${RUNS:-2000}
PY=${PYTHON:-python3}
LPY=${LOOMIQ_PYTHON:-$REPO/.venv/bin/python}
RESULTS=${BENCH_RESULTS:-$HERE/results}
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RESULTS/$STAMP.tools.jsonl
: > "$OUT"
export PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 OPENAI_AGENTS_DISABLE_TRACING=1 OTEL_SDK_DISABLED=true

ensure_venv() {  # the same rule as shared/bench-peers/run_all.sh: (re)build when the requirements changed
  local v=$1 dir="$VENV_ROOT/$1" req="$PEERS_DIR/requirements-$1.txt"
  if [[ -x "$dir/bin/python" ]] && cmp -s "$req" "$dir/.peers-req"; then return; fi
  echo "== creating venv $dir (pip install -r requirements-$v.txt)" >&2
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$dir/.peers-req"
}
ensure_venv pydanticai
ensure_venv openaiagents

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
failed=0
one() {  # $1 = label, $2 = python, rest = script and args
  local label=$1 py=$2 line
  shift 2
  if line=$(cd "$HERE/tools_peers" && "$py" "$@" </dev/null 2>"$OUT.$label.err" | tail -n 1) && [[ $line == \{* ]]; then
    echo "$line" >> "$OUT"; rm -f "$OUT.$label.err"; echo "-- $label" >&2
  else
    echo "!! $label failed; stderr in $OUT.$label.err" >&2; failed=1
  fi
}
for ((i = 1; i <= REPS; i++)); do
  one "overhead.$i" "$LPY" "$HERE/bench_tools.py"
  one "floor.$i" "$PY" bench_floor.py --runs "$RUNS"
  one "loomiq.$i" "$LPY" bench_loomiq.py --runs "$RUNS"
  one "pydantic-ai.$i" "$VENV_ROOT/pydanticai/bin/python" bench_pydantic_ai.py --runs "$RUNS"
  one "openai-agents.$i" "$VENV_ROOT/openaiagents/bin/python" bench_openai_agents.py --runs "$RUNS"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "results: $OUT ($(nproc) cores, load $load_start -> $load_end)" >&2
"$LPY" "$HERE/bench_tools.py" --summary "$OUT" | tee "$RESULTS/$STAMP.tools.summary.json"
exit $failed
