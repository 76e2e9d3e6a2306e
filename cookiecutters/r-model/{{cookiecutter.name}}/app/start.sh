#!/bin/bash
# The model service: N R processes, each with the model loaded once, behind nginx on PORT
# (least connections, so a slow request never queues the others). With one worker, plumber
# listens on PORT itself. If any process dies the pod exits, and Kubernetes restarts it.
set -euo pipefail
APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${PORT:-8080}"
HOST="${HOST:-0.0.0.0}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
export TZ="${TZ:-UTC}"

# Fail fast, with one line, on a missing or altered artifact (exit 3), before anything listens.
Rscript "$APP_DIR/worker.R" --check

read -r WORKERS PORTS LIMIT TIMEOUT < <(Rscript "$APP_DIR/plan.R")

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/modelgen-XXXXXX")"
mkdir -p "$RUN_DIR/metrics" "$RUN_DIR/temp"
# nginx started by root (a developer's machine) runs its workers as nobody: let them buffer.
chmod 755 "$RUN_DIR" && chmod 1777 "$RUN_DIR/temp"
export METRICS_DIR="$RUN_DIR/metrics"
pids=()
stop_all() {
  trap - TERM INT
  [ -f "$RUN_DIR/nginx.pid" ] && kill -QUIT "$(cat "$RUN_DIR/nginx.pid")" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  rm -rf "$RUN_DIR"
}
trap 'stop_all; exit 0' TERM INT

if [ "$WORKERS" -eq 1 ]; then
  # R does not act on SIGTERM as PID 1 would need: this shell stays in front to stop it.
  HOST="$HOST" PORT="$PORT" Rscript "$APP_DIR/worker.R" &
  pids+=($!)
  wait -n "${pids[@]}" || true
  stop_all
  exit 1
fi

upstream=""
for port in ${PORTS//,/ }; do
  HOST=127.0.0.1 PORT="$port" Rscript "$APP_DIR/worker.R" &
  pids+=($!)
  upstream="$upstream    server 127.0.0.1:$port;"$'\n'
done
# nginx starts once every worker answers, so no request meets a worker still loading the model.
for port in ${PORTS//,/ }; do
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "a worker exited while starting" >&2; stop_all; exit 1; }; done
    sleep 0.1
  done
done

listen="$PORT"
[ "$HOST" = "0.0.0.0" ] || listen="$HOST:$PORT"
error="{\"error\":{\"message\":\"request body over the limit of $LIMIT bytes\",\"column\":null,\"row\":null}}"
cat > "$RUN_DIR/nginx.conf" <<CONF
worker_processes 1;
pid $RUN_DIR/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $RUN_DIR/temp/body;
  proxy_temp_path $RUN_DIR/temp/proxy;
  fastcgi_temp_path $RUN_DIR/temp/fastcgi;
  uwsgi_temp_path $RUN_DIR/temp/uwsgi;
  scgi_temp_path $RUN_DIR/temp/scgi;
  # No upstream keepalive: httpuv delays replies on kept-alive connections (delayed ACKs).
  upstream workers {
    least_conn;
$upstream  }
  server {
    listen $listen;
    client_max_body_size $LIMIT;
    client_body_buffer_size 1m;
    proxy_read_timeout ${TIMEOUT}s;
    # An R worker cannot stop a request half scored: when its client goes away, keep the upstream
    # connection until the worker answers, so least_conn still counts that worker as busy and
    # sends the next request to an idle one (dropping it made the busy worker look free).
    proxy_ignore_client_abort on;
    error_page 413 = @too_large;
    location @too_large {
      default_type application/json;
      return 413 '$error';
    }
    location / {
      proxy_pass http://workers;
      proxy_set_header Host \$host;
    }
  }
}
CONF
"$NGINX" -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -g 'daemon off;' &
pids+=($!)
echo "serving on $listen with $WORKERS R workers behind nginx" >&2
wait -n "${pids[@]}" || true
echo "a process of the service exited; stopping the others" >&2
stop_all
exit 1
