#!/bin/sh
# Compare the routes a change proposes with the routes that are deployed, over
# a corpus of real-looking queries, and write a Markdown report for reviewers.
#
#   routes-diff.sh OLD_DIR NEW_DIR QUERIES REPORT.md
#   AT=2026-12-01T10:00:00Z routes-diff.sh …   (decide as at that time)
#
# Exit status: 0 no call changes route, 1 some calls change route (the
# report says which), anything else: c4route failed (bad routes, bad
# corpus, missing binary); the report then holds its error output.
#
# `c4route diff` prints the changed decisions on stdout (machine output)
# and its human summary on stderr; both go into the report.
set -u

old=$1 new=$2 queries=$3 report=$4
C4ROUTE=${C4ROUTE:-c4route}
# Keep the report below the 64 KiB limit of a GitHub comment.
MAX_LINES=${MAX_LINES:-200}
MAX_BYTES=${MAX_BYTES:-30000}

out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

status=0
# AT=2026-12-01T10:00:00Z replays the corpus at that moment (schedules).
if [ -n "${AT:-}" ]; then
  "$C4ROUTE" diff --at "$AT" "$old" "$new" "$queries" >"$out" 2>"$err" || status=$?
else
  "$C4ROUTE" diff "$old" "$new" "$queries" >"$out" 2>"$err" || status=$?
fi

total=$(grep -c . "$queries" 2>/dev/null); total=${total:-0}
changed=$(grep -c . "$out" 2>/dev/null); changed=${changed:-0}

{
  echo "<!-- c4route-route-diff -->"
  echo "### c4route: which calls change route"
  echo
  case $status in
    0) echo "No call of the $total queries in \`$queries\` changes route${AT:+ at $AT}." ;;
    1) echo "**$changed of the $total queries in \`$queries\` change route${AT:+ at $AT}.** Check that each change is intended before merging." ;;
    *) echo "**\`c4route diff\` failed (exit status $status)**: the proposed or the deployed routes.d, or the corpus, could not be read." ;;
  esac
  # The human summary (stderr): one line per changed query, old -> new.
  if [ -s "$err" ]; then
    echo
    echo '```'
    head -n "$MAX_LINES" "$err"
    [ "$(wc -l <"$err")" -gt "$MAX_LINES" ] && echo "… (truncated; see the job log)"
    echo '```'
  fi
  # The machine output (stdout): the query and both complete answers.
  if [ -s "$out" ]; then
    echo
    echo "<details><summary>old and new answers (JSON Lines)</summary>"
    echo
    echo '```json'
    head -c "$MAX_BYTES" "$out"
    [ "$(wc -c <"$out")" -gt "$MAX_BYTES" ] && printf '\n… (truncated; see the job log)\n'
    echo '```'
    echo "</details>"
  fi
} >"$report"

cat "$err" >&2
cat "$out"
exit "$status"
