#!/usr/bin/env bash
# What observability costs the hot paths: loomiq's in-process and durable (SQLite) latency figures with
# it off, on (JSON logs at INFO, metrics on the durable engine, tracing with no exporter) and with OTLP
# export to a local sink, alternating in fresh processes, REPS times each. One JSON line per run on stdout.
#
#   bash bench/bench_observe.sh            # REPS=3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${LOOMIQ_PYTHON:-.venv/bin/python}
REPS=${REPS:-3}
"$PY" bench/otlp_sink.py > /tmp/loomiq-otlp-sink.url &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
sleep 1
export LOOMIQ_BENCH_OTLP=$(head -1 /tmp/loomiq-otlp-sink.url)
for rep in $(seq "$REPS"); do
  for mode in off on otlp; do
    for script in bench_loomiq.py bench_loomiq_durable.py; do
      LOOMIQ_BENCH_OBSERVE=$mode "$PY" "bench/$script" --mode latency 2>/dev/null \
        | "$PY" -c "import json,sys; d=json.loads(sys.stdin.readline()); d['observe']='$mode'; d['rep']=$rep; print(json.dumps(d))"
    done
  done
done
