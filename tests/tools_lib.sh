# tools_lib.sh - the assertions shared by the shell tests of the programs
# (test_tools.sh, test_flags_tools.sh, test_events.sh), sourced after they
# set $tmp (a scratch directory) and passed=0.
#
# Every assertion counts; the first failure prints what failed, the last
# command's output ($tmp/out, $tmp/err, and $tmp/fol if any), the last
# lines of every $tmp/*.log (the daemons a test started) and exits 1.
# "N passed, 0 failed" is printed by the script only when all held.

fail() {
	echo "FAIL: $*" >&2
	for f in out err fol; do
		if [ -s "$tmp/$f" ]; then sed "s/^/  $f: /" "$tmp/$f" >&2; fi
	done
	# The logs of the daemons the test started (agents, etcd): their ends.
	for f in "$tmp"/*.log; do
		[ -s "$f" ] || continue
		tail -n 15 "$f" | cut -c 1-300 | sed "s|^|  $(basename "$f"): |" >&2
	done
	echo "$passed passed, 1 failed" >&2
	exit 1
}

ok() {
	passed=$((passed + 1))
}

# run STATUS WHAT CMD...: CMD must exit with STATUS; its output is kept in
# $tmp/out and $tmp/err for the checks that follow.  (Programs never write
# to the test's own stdout/stderr, so a reaper they start cannot hold them.)
run() {
	want=$1
	what=$2
	shift 2
	if "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; then st=0; else st=$?; fi
	[ "$st" -eq "$want" ] || fail "$what: exit status $st, expected $want"
	ok
}

out_has() {
	grep -qF -- "$2" "$tmp/out" || fail "$1: output lacks '$2'"
	ok
}

out_lacks() {
	if grep -qF -- "$2" "$tmp/out"; then fail "$1: output has '$2'"; fi
	ok
}

# out_is WHAT TEXT: stdout is exactly TEXT.
out_is() {
	[ "$(cat "$tmp/out")" = "$2" ] || fail "$1: stdout is not exactly '$2'"
	ok
}

# err_is WHAT LINE: stderr is exactly that one line.
err_is() {
	[ "$(wc -l <"$tmp/err")" -eq 1 ] && [ "$(cat "$tmp/err")" = "$2" ] ||
		fail "$1: stderr is not exactly '$2'"
	ok
}

# json WHAT PYTHON-EXPR: $tmp/out parses as JSON (d) and the expression holds.
json() {
	python3 -m json.tool "$tmp/out" >/dev/null 2>&1 || fail "$1: not JSON"
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" \
		"$tmp/out" || fail "$1: JSON check failed: $2"
	ok
}

# skip_if_emulated WHAT: under an emulator ($FOUNDATION_TEST_EMULATED, set
# by the cross build's tests), print "SKIP: WHAT under qemu-user" and
# return 0 (the caller leaves the check out); else return 1.
skip_if_emulated() {
	[ -n "${FOUNDATION_TEST_EMULATED:-}" ] || return 1
	echo "SKIP: $1 under qemu-user ($FOUNDATION_TEST_EMULATED)"
	return 0
}
