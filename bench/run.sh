#!/usr/bin/env bash
# loomiq on the peer orchestration-overhead benchmark, beside the plain-asyncio floor (same minutes).
#
#   bash bench/run.sh                 # floor + loomiq, REPS x (latency, throughput), ~1 min
#   PEERS=1 bash bench/run.sh         # first the peers (floor langgraph-raw openai-agents pydantic-ai)
#                                     # through shared/bench-peers/run_all.sh, then floor + loomiq
#   REPS=1 PEERS_RUNS=50 bash bench/run.sh   # quick smoke run
#   SET=durable bash bench/run.sh     # the durable set instead (below); SET=all: both
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
#   SET              memory (default: the in-memory set above), durable, or all
#
# The durable set (SET=durable|all) runs, REPS times per mode and alternating in fresh processes,
# the peers' floor-durable (bench_floor_durable.py, system python3) and bench/bench_loomiq_durable.py
# on SQLite and on PostgreSQL (a variant whose script prints "SKIP:" is skipped), with the PostgreSQL
# floor (bench/bench_floor_durable_pg.py, against which the PostgreSQL rows are compared), then once each the
# engine's own figures (--mode submit on both, --mode scaleout on PostgreSQL), into <stamp>.durable.jsonl.
# With PEERS=1 it first runs the peers' durable set (PEERS_DURABLE_IDS, default
# "floor-durable langgraph-durable dbos") into <stamp>.peers-durable.jsonl. Knobs:
#   DURABLE_VARIANTS  "sqlite postgres" (default)
#   DURABLE_CONC      (c) concurrent durable W2 runs (default CONC)
#   SCALEOUT_BATCH    tasks in the scale-out batch (default 200; 500 ms calls, 5 per worker, 1 then 4 workers)
#   SUBMIT_RUNS       submissions measured per submit figure (default 1000)
#   LOOMIQ_BENCH_PG_URL / PEERS_PG_URL   PostgreSQL for the postgres variant
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

SET=${SET:-memory}
case $SET in memory|durable|all) ;; *) echo "SET must be memory, durable or all" >&2; exit 2 ;; esac
DURABLE_OUT=$RESULTS/$STAMP.durable.jsonl
PEERS_DURABLE_FILE=$RESULTS/$STAMP.peers-durable.jsonl

peers_args=()
if [[ "${PEERS:-0}" == 1 && $SET != durable ]]; then
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
failed=0
if [[ $SET != durable ]]; then
echo "== floor + loomiq, $REPS rep(s) per mode" >&2
for ((i = 1; i <= REPS; i++)); do
  for mode in latency throughput; do
    run_one floor "$PY" "$PEERS_DIR/bench_floor.py" "$mode" "$i" || failed=1
    run_one loomiq "$LPY" "$HERE/bench_loomiq.py" "$mode" "$i" || failed=1
  done
done
fi

durable_args=()
if [[ $SET != memory ]]; then
  if [[ "${PEERS:-0}" == 1 ]]; then
    ids=${PEERS_DURABLE_IDS:-floor-durable langgraph-durable dbos}
    echo "== durable peers: $ids" >&2
    if PEERS_ONLY=$ids PEERS_OUT=$PEERS_DURABLE_FILE PEERS_REPS=${PEERS_REPS:-$REPS} PEERS_RUNS=$RUNS \
       PEERS_LAT_RUNS=$LAT_RUNS PEERS_CONC=$CONC PYTHON=$PY bash "$PEERS_DIR/run_all.sh" >&2; then :
    else
      echo "!! run_all.sh (durable) failed (rc $?); keeping whatever rows it wrote" >&2
    fi
  fi
  : > "$DURABLE_OUT"
  skip=" "
  run_durable() {  # $1 = id, $2 = python, $3 = script, $4 = mode, $5 = rep, rest = extra args
    local id=$1 py=$2 script=$3 mode=$4 rep=$5 err line t0 rc
    shift 5
    [[ $skip == *" $id "* ]] && return 0
    err=$DURABLE_OUT.$id.$mode.$rep.err
    t0=$(date +%s)
    rc=0
    line=$("$py" "$script" "$@" --mode "$mode" --runs "${RUNS_OVERRIDE:-$RUNS}" --lat-runs "$LAT_RUNS" \
             --conc "${DURABLE_CONC:-$CONC}" </dev/null 2>"$err" | tail -n 1) || rc=$?
    if ((rc == 0)) && [[ $line == \{* ]]; then
      echo "$line" >> "$DURABLE_OUT"
      rm -f "$err"
      echo "-- $id $mode rep $rep: $(( $(date +%s) - t0 ))s" >&2
    elif grep -q "^SKIP:" "$err"; then
      echo "-- $id skipped: $(grep -m1 "^SKIP:" "$err" | cut -c7-)" >&2
      rm -f "$err"
      skip="$skip$id "
    else
      echo "!! $id $mode rep $rep failed; stderr in $err" >&2
      return 1
    fi
  }
  variants=${DURABLE_VARIANTS:-sqlite postgres}
  echo "== floor-durable + loomiq durable ($variants), $REPS rep(s) per mode" >&2
  for ((i = 1; i <= REPS; i++)); do
    for mode in latency throughput; do
      run_durable floor-durable "$PY" "$PEERS_DIR/bench_floor_durable.py" "$mode" "$i" || failed=1
      for v in $variants; do
        run_durable "loomiq-durable-$v" "$LPY" "$HERE/bench_loomiq_durable.py" "$mode" "$i" --variant "$v" || failed=1
      done
      if [[ " $variants " == *" postgres "* ]]; then  # the floor on PostgreSQL: one committed row per call
        run_durable floor-durable-pg "$LPY" "$HERE/bench_floor_durable_pg.py" "$mode" "$i" || failed=1
      fi
    done
  done
  echo "== loomiq engine figures: submit ($variants), scale-out (postgres)" >&2
  for v in $variants; do
    RUNS_OVERRIDE=${SUBMIT_RUNS:-1000} run_durable "loomiq-durable-$v" "$LPY" "$HERE/bench_loomiq_durable.py" \
      submit 1 --variant "$v" || failed=1
  done
  if [[ " $variants " == *" postgres "* ]]; then
    run_durable "loomiq-durable-postgres" "$LPY" "$HERE/bench_loomiq_durable.py" scaleout 1 --variant postgres \
      --batch "${SCALEOUT_BATCH:-200}" || failed=1
  fi
  durable_args=(--durable "$DURABLE_OUT")
  [[ -s "$PEERS_DURABLE_FILE" ]] && durable_args+=(--peers-durable "$PEERS_DURABLE_FILE")
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo >&2
echo "results: $OUT  (total $(( $(date +%s) - start ))s, $(nproc) cores, $(date -u +%F))" >&2
[[ -s "$OUT" ]] && "$PY" "$PEERS_DIR/report.py" "$OUT" >&2
if ((${#durable_args[@]})); then
  echo >&2
  echo "durable: $DURABLE_OUT" >&2
  grep -v '"mode": "\(submit\|scaleout\)"' "$DURABLE_OUT" > "$DURABLE_OUT.harness" || true
  [[ -s "$DURABLE_OUT.harness" ]] && "$PY" "$PEERS_DIR/report.py" "$DURABLE_OUT.harness" >&2
  rm -f "$DURABLE_OUT.harness"
  [[ -s "$PEERS_DURABLE_FILE" ]] && { echo "durable peers: $PEERS_DURABLE_FILE" >&2; "$PY" "$PEERS_DIR/report.py" "$PEERS_DURABLE_FILE" >&2; }
fi
if ((${#peers_args[@]})); then
  echo >&2
  echo "peers: $PEERS_FILE" >&2
  "$PY" "$PEERS_DIR/report.py" "$PEERS_FILE" >&2
fi

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
"$PY" "$HERE/summary.py" "$OUT" "${peers_args[@]}" "${durable_args[@]}" \
  --meta "date_utc=$(date -u +%FT%TZ)" --meta "nproc=$(nproc)" --meta "cpu=$cpu" \
  --meta "python=$("$LPY" -c 'import platform; print(platform.python_version())')" \
  --meta "loadavg_start=$load_start" --meta "loadavg_end=$load_end" \
  --meta "reps=$REPS" --meta "runs=$RUNS" --meta "lat_runs=$LAT_RUNS" --meta "conc=$CONC" \
  > "$SUMMARY"
cat "$SUMMARY"
echo "summary: $SUMMARY" >&2
exit $failed
