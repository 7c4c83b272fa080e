#!/usr/bin/env bash
# loomiq on the peer orchestration-overhead benchmark, beside the plain-asyncio floor (same minutes).
#
#   bash bench/run.sh                 # floor + loomiq, REPS x (latency, throughput), ~1 min
#   PEERS=1 bash bench/run.sh         # first the peers (floor langgraph-raw openai-agents pydantic-ai)
#                                     # through shared/bench-peers/run_all.sh, then floor + loomiq
#   REPS=1 PEERS_RUNS=50 bash bench/run.sh   # quick smoke run
#
# Prints a table per results file on stderr and the summary JSON on stdout (also written next to
# the results as <stamp>.summary.json). See docs/benchmarks.md for what each figure means.
#
# Environment knobs:
#   REPS             repetitions per mode, each in a fresh process (default 3; PEERS_REPS for the peers,
#                    default REPS)
#   PEERS            1 = run the peers first (their venvs are built in PEERS_VENV_ROOT, default
#                    /tmp/peers-venv, on first use: a few minutes)
#   PEERS_IDS        peer ids for PEERS=1 (default "floor langgraph-raw openai-agents pydantic-ai")
#   PEERS_DIR        the peer benchmark (default <repo>/../shared/bench-peers)
#   PEERS_RUNS       (a) runs per workload at L=0   (default 200)
#   PEERS_LAT_RUNS   (b) runs per workload at L=50ms (default 10)
#   PEERS_CONC       (c) concurrent W2 runs         (default 1000)
#   PYTHON           python for the floor (stdlib only; default python3)
#   LOOMIQ_PYTHON    python for loomiq (default <repo>/.venv/bin/python, else python3 if it imports loomiq)
#   BENCH_RESULTS    results folder (default bench/results)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=$(cd "${PEERS_DIR:-$REPO/../shared/bench-peers}" && pwd)
export PEERS_DIR
REPS=${REPS:-3}
RUNS=${PEERS_RUNS:-200}
LAT_RUNS=${PEERS_LAT_RUNS:-10}
CONC=${PEERS_CONC:-1000}
PY=${PYTHON:-python3}
if [[ -n "${LOOMIQ_PYTHON:-}" ]]; then
  LPY=$LOOMIQ_PYTHON
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  LPY=$REPO/.venv/bin/python
elif python3 -c "import loomiq" 2>/dev/null; then
  LPY=python3
else
  echo "no python with loomiq: set LOOMIQ_PYTHON or create $REPO/.venv" >&2
  exit 2
fi
"$LPY" -c "import loomiq" || { echo "$LPY cannot import loomiq" >&2; exit 2; }

RESULTS=${BENCH_RESULTS:-$HERE/results}
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RESULTS/$STAMP.jsonl
PEERS_FILE=$RESULTS/$STAMP.peers.jsonl
SUMMARY=$RESULTS/$STAMP.summary.json
: > "$OUT"

export PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

peers_args=()
if [[ "${PEERS:-0}" == 1 ]]; then
  echo "== peers: ${PEERS_IDS:-floor langgraph-raw openai-agents pydantic-ai}" >&2
  if PEERS_ONLY=${PEERS_IDS:-floor langgraph-raw openai-agents pydantic-ai} PEERS_OUT=$PEERS_FILE \
     PEERS_REPS=${PEERS_REPS:-$REPS} PEERS_RUNS=$RUNS PEERS_LAT_RUNS=$LAT_RUNS PEERS_CONC=$CONC \
     PYTHON=$PY bash "$PEERS_DIR/run_all.sh" >&2; then :
  else
    echo "!! run_all.sh failed (rc $?); keeping whatever rows it wrote" >&2
  fi
  [[ -s "$PEERS_FILE" ]] && peers_args=(--peers "$PEERS_FILE")
fi

run_one() {  # $1 = id, $2 = python, $3 = script, $4 = mode, $5 = rep
  local err=$OUT.$1.$4.$5.err t0 line
  t0=$(date +%s)
  if line=$("$2" "$3" --mode "$4" --runs "$RUNS" --lat-runs "$LAT_RUNS" --conc "$CONC" \
              </dev/null 2>"$err" | tail -n 1) && [[ $line == \{* ]]; then
    echo "$line" >> "$OUT"
    rm -f "$err"
    echo "-- $1 $4 rep $5: $(( $(date +%s) - t0 ))s" >&2
  else
    echo "!! $1 $4 rep $5 failed; stderr in $err" >&2
    return 1
  fi
}

# Floor and loomiq alternate, each process fresh, so that both see the same minutes.
echo "== floor + loomiq, $REPS rep(s) per mode" >&2
failed=0
for ((i = 1; i <= REPS; i++)); do
  for mode in latency throughput; do
    run_one floor "$PY" "$PEERS_DIR/bench_floor.py" "$mode" "$i" || failed=1
    run_one loomiq "$LPY" "$HERE/bench_loomiq.py" "$mode" "$i" || failed=1
  done
done

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo >&2
echo "results: $OUT  (total $(( $(date +%s) - start ))s, $(nproc) cores, $(date -u +%F))" >&2
"$PY" "$PEERS_DIR/report.py" "$OUT" >&2
if ((${#peers_args[@]})); then
  echo >&2
  echo "peers: $PEERS_FILE" >&2
  "$PY" "$PEERS_DIR/report.py" "$PEERS_FILE" >&2
fi

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
"$PY" "$HERE/summary.py" "$OUT" "${peers_args[@]}" \
  --meta "date_utc=$(date -u +%FT%TZ)" --meta "nproc=$(nproc)" --meta "cpu=$cpu" \
  --meta "python=$("$LPY" -c 'import platform; print(platform.python_version())')" \
  --meta "loadavg_start=$load_start" --meta "loadavg_end=$load_end" \
  --meta "reps=$REPS" --meta "runs=$RUNS" --meta "lat_runs=$LAT_RUNS" --meta "conc=$CONC" \
  > "$SUMMARY"
cat "$SUMMARY"
echo "summary: $SUMMARY" >&2
exit $failed
