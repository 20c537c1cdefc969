#!/usr/bin/env bash
# Side-by-side gateway benchmark on one machine (`make bench`): the project's own harness.
#
#   tests/bench/run.sh [--anchor LITELLM_VENV] [--seconds N] [--rounds N] [--variants a,b] [CHECKOUT]
#   tests/bench/run.sh --soak CALLS [CHECKOUT]     (`make bench-soak`)
#
# --soak: the gateway alone under chat and stream load (c=64) for CALLS calls, its RSS printed
# after 20,000 calls and at each tenth of the way; the goal is the last within 10 % of the first
# (memory flat, nothing growing per call).
#
# Systems, each started alone, pinned to core 0, driven by wrk pinned to core 1:
#   relay      the ceiling: a bare Flask + gevent + requests relay (relay.py), same gunicorn worker
#   dheera     CHECKOUT/.venv/bin/dheera_ai --workers 1, called with a virtual key
#   dheera+V   the same with variants/V.yaml appended to its config (a feature switched on)
#   dheera+cache  always: the response cache on; its `chat cached c=64` row (a hit every call) goes
#              against the relay's row for the same requests (goal: 2x, a hit never leaves the gateway)
#   litellm    the anchor, only when --anchor names a venv with `litellm[proxy]` installed
# Upstream: nginx serving fixed OpenAI answers (never the bottleneck: ~80k req/s here).
# Prints a row per system and scenario (req/s, p50, p90, p99, max, errors, RSS, the answers per
# connection min/median/max, and PSS: RSS with pages shared by master and worker counted once),
# then the throughput and p99 ratios against the relay (and LiteLLM), how evenly connections were
# served, and each system's memory against LiteLLM's, so a regression shows at a glance.
set -u
here=$(cd "$(dirname "$0")" && pwd)
anchor=""; secs=10; rounds=1; variants=""; soak=0
while [ $# -gt 0 ]; do
  case "$1" in
    --anchor) anchor=$2; shift 2;;
    --seconds) secs=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --variants) variants=$(echo "$2" | tr ',' ' '); shift 2;;
    --soak) soak=$2; shift 2;;
    *) break;;
  esac
done
checkout=$(cd "${1:-$here/../..}" && pwd)
for v in $variants; do [ -f "$here/variants/$v.yaml" ] || { echo "no variant $here/variants/$v.yaml"; exit 2; }; done
command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || {
  echo "installing wrk and nginx-light"
  apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null 2>&1; }
PATH=$PATH:/usr/sbin
work=$(mktemp -d /tmp/dheera-bench.XXXX); chmod 755 "$work"
trap 'kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null' EXIT
up=$((30000 + RANDOM % 3000)); gw=$((33000 + RANDOM % 3000))
cp "$here"/fixtures/chat.json "$here"/fixtures/emb.json "$here"/fixtures/stream.sse "$work/"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  error_page 405 =200 \$uri;
  server {
    listen 127.0.0.1:$up;
    location = /v1/chat/completions { default_type application/json; alias $work/chat.json; }
    location = /stream/v1/chat/completions { default_type text/event-stream; alias $work/stream.sse; }
    location = /v1/embeddings { default_type application/json; alias $work/emb.json; }
    # A trace receiver that answers at once (variants/otel.yaml exports here).
    location /otlp/ { return 200; }
  }
}
CONF
taskset -c 1 nginx -c "$work/nginx.conf" || { echo "nginx did not start"; exit 2; }

config() {  # $1: the key that holds provider params
  cat <<CONF
model_list:
  - model_name: gpt-4o-mini
    $1: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$up/v1", api_key: sk-upstream}
  - model_name: gpt-4o-mini-stream
    $1: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$up/stream/v1", api_key: sk-upstream}
general_settings:
  master_key: sk-bench-master
CONF
}
config dheera_ai_params > "$work/dheera.yaml"
config litellm_params > "$work/litellm.yaml"
for v in cache $variants; do
  { cat "$work/dheera.yaml"; echo; sed "s|BENCH_UPSTREAM|http://127.0.0.1:$up|g" "$here/variants/$v.yaml"; } > "$work/dheera+$v.yaml"
done

tree_pids() {  # a process and its descendants
  local pids=$1 all=$1 next
  while [ -n "$pids" ]; do
    next=$(for p in $pids; do pgrep -P "$p"; done | tr '\n' ' ')
    all="$all $next"; pids=$next
  done
  echo $all
}

tree_rss() {  # kB of RSS summed over a process and its descendants
  ps -o rss= -p "$(tree_pids "$1" | tr ' ' ',')" 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

# kB of PSS summed over the same processes: what the tree costs the machine. A gunicorn worker
# shares the pages its master had when it forked, and summed RSS counts those twice; PSS splits
# each shared page between the processes that map it, so the sum counts it once.
tree_pss() {
  for p in $(tree_pids "$1"); do cat "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '$1=="Pss:" {s+=$2} END {print s+0}'
}

wait_up() {
  for _ in $(seq 1 240); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$gw/chat/completions" \
      -H 'Authorization: Bearer sk-bench-master' -H 'Content-Type: application/json' \
      -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
    [ "$code" = 200 ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

results="$work/results.tsv"
measure() {  # $1 system name; the system listens on $gw
  local key=sk-bench-master k
  case "$1" in dheera*)
    k=$(curl -s -X POST "http://127.0.0.1:$gw/key/generate" -H 'Authorization: Bearer sk-bench-master' \
      -H 'Content-Type: application/json' -d '{"models":["gpt-4o-mini","gpt-4o-mini-stream"]}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("key",""))' 2>/dev/null)
    [ -n "$k" ] && key=$k;;
  esac
  local scenarios="chat:8 chat:64 stream:64"
  if [ "$1" = relay ] || grep -qs "cache: true" "$work/$1.yaml"; then scenarios="$scenarios cached:64"; fi
  for sc in $scenarios; do
    set -- "$1" ${sc%:*} ${sc#*:}
    # One connection per wrk thread: spread.lua counts each connection's answers.
    out=$(BENCH_KEY=$key BENCH_LUA="$here/fixtures" taskset -c 1 wrk -t"$3" -c"$3" -d"${secs}s" --latency \
      -s "$here/fixtures/$2.lua" \
      "http://127.0.0.1:$gw/chat/completions" 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    pct() { echo "$out" | awk -v p="$1" '$1==p {print $2}'; }
    max=$(echo "$out" | awk '$1=="Latency" {print $4; exit}')
    err=$(echo "$out" | awk '/Non-2xx/ {print $5} /Socket errors/ {print "sock"}' | tr '\n' ' ')
    spread=$(echo "$out" | awk '$1=="per-connection" {print $2 "/" $3 "/" $4}')
    printf '%s\t%s c=%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$([ "$2" = cached ] && echo "chat cached" || echo "$2")" "$3" "$rps" "$(pct 50%)" "$(pct 90%)" "$(pct 99%)" \
      "$max" "${err:-0}" "$(tree_rss "$pid")" "${spread:--}" "$(tree_pss "$pid")" >> "$results"
  done
}

run_system_start() {  # starts $1 on $gw, sets $pid; false if it never answers
  case "$1" in
    relay)   (cd "$checkout" && BENCH_UPSTREAM="http://127.0.0.1:$up" exec taskset -c 0 "$checkout/.venv/bin/gunicorn" \
               -k gevent -w 1 --worker-connections 2000 -b "127.0.0.1:$gw" tests.bench.relay:app) > "$work/relay.log" 2>&1 &
             pid=$!;;
    dheera*) (cd "$work" && exec taskset -c 0 "$checkout/.venv/bin/dheera_ai" --config "$work/$1.yaml" --port "$gw" \
               --workers 1) > "$work/$1.log" 2>&1 & pid=$!;;
    litellm) (cd "$work" && LITELLM_LOG=ERROR exec taskset -c 0 "$anchor/bin/litellm" --config "$work/litellm.yaml" \
               --port "$gw" --num_workers 1) > "$work/litellm.log" 2>&1 & pid=$!;;
  esac
  wait_up || { echo "$1 did not answer; log:"; tail -5 "$work/$1.log"; return 1; }
}

run_system() {
  run_system_start "$1" && measure "$1"
  kill "$pid" 2>/dev/null; sleep 1; for c in $(pgrep -P "$pid"); do kill "$c" 2>/dev/null; done
  kill -9 "$pid" 2>/dev/null; { wait "$pid"; } 2>/dev/null; sleep 1  # reaped quietly: no "Killed" line
}

soak_run() {  # $1 calls in all: wrk in rounds of 20,000-ish calls, alternating chat and stream
  local calls=0 next=20000 step=$(( $1 / 10 )) round=0 script n k
  run_system_start dheera || return 1
  k=$(curl -s -X POST "http://127.0.0.1:$gw/key/generate" -H 'Authorization: Bearer sk-bench-master' \
    -H 'Content-Type: application/json' -d '{"models":["gpt-4o-mini","gpt-4o-mini-stream"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("key",""))')
  printf 'calls\tRSS kB\tvs first\n'
  local first=""
  while [ "$calls" -lt "$1" ]; do
    script=chat; [ $((round % 2)) = 1 ] && script=stream; round=$((round + 1))
    n=$(BENCH_KEY=$k BENCH_LUA="$here/fixtures" taskset -c 1 wrk -t64 -c64 -d20s -s "$here/fixtures/$script.lua" \
      "http://127.0.0.1:$gw/chat/completions" 2>&1 | awk '/requests in/ {print $1}')
    calls=$((calls + ${n:-0}))
    [ "${n:-0}" -gt 0 ] || { echo "no answers in a round; log:"; tail -5 "$work/dheera.log"; break; }
    if [ "$calls" -ge "$next" ] || [ "$calls" -ge "$1" ]; then
      rss=$(tree_rss "$pid"); first=${first:-$rss}
      printf '%s\t%s\t%s\n' "$calls" "$rss" "$(awk -v a="$rss" -v b="$first" 'BEGIN {printf "%.3f", a / b}')"
      next=$((calls + step))
    fi
  done
  kill "$pid" 2>/dev/null; sleep 1; for c in $(pgrep -P "$pid"); do kill "$c" 2>/dev/null; done
}

if [ "$soak" -gt 0 ]; then soak_run "$soak"; exit; fi

systems="relay dheera"
for v in cache $variants; do case " $systems " in *" dheera+$v "*) ;; *) systems="$systems dheera+$v";; esac; done
[ -n "$anchor" ] && systems="$systems litellm"
for _ in $(seq 1 "$rounds"); do for s in $systems; do echo "measuring $s ..."; run_system "$s"; done; done
python3 "$here/summary.py" "$results"
