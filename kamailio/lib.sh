# Shell helpers shared by kamailio/tests/run.sh and kamailio/cps-sweep.sh (sourced, not run).

# stop_pid PID: SIGTERM, then SIGKILL after 5 s, then reap. Only ever called with the PIDs of
# processes the calling script started itself.
stop_pid() {
    local p=$1 i
    [[ -n "$p" ]] || return 0
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
