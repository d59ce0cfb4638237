#!/usr/bin/env bash
# The gossip core must stay free of I/O, clocks, randomness and the heap taken
# directly (DESIGN.md section 2): it runs identically under libuv and under
# the simulator only if everything comes through struct zpf_env.
set -u
cd "$(dirname "$0")/.."
scan() { # dir: prints every violation, returns 1 if any
    local dir=$1 bad=0
    inc=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](uv\.h|uv/|curl/|sqlite3\.h|yaml\.h|jansson\.h|libxml/|sys/socket\.h|sys/time\.h|netinet/|arpa/|netdb\.h|pthread\.h|time\.h|unistd\.h|stdio\.h|fcntl\.h)' "$dir")
    if [ -n "$inc" ]; then echo "gossip/ includes a forbidden header:"; echo "$inc"; bad=1; fi
    # Only libc, msgpack, libsodium and zpf's own headers may be included.
    other=$(grep -rhE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<' "$dir" | sed -E 's/.*<([^>]*)>.*/\1/' |
            grep -vE '^(stdbool|stddef|stdint|string|math|errno|limits|assert|msgpack|sodium)\.h$' | sort -u)
    if [ -n "$other" ]; then echo "gossip/ includes headers outside the allowed set:"; echo "$other"; bad=1; fi
    uplevel=$(grep -rnE '#[[:space:]]*include[[:space:]]*"[^"]*(agent|drivers)/' "$dir")
    if [ -n "$uplevel" ]; then echo "gossip/ reaches into agent/ or drivers/:"; echo "$uplevel"; bad=1; fi
    calls=$(grep -rnE '\b(malloc|calloc|realloc|free|rand|random|srand|time|clock_gettime|gettimeofday|getenv|printf|fprintf|abort|exit)[[:space:]]*\(' "$dir" --include='*.c' |
            grep -vE '(->|\.)realloc\(' )
    if [ -n "$calls" ]; then echo "gossip/ calls the heap, a clock, randomness or stdio directly:"; echo "$calls"; bad=1; fi
    globals=$(grep -nE '^(static[[:space:]]+)?[a-z_][a-z0-9_ ]*[[:space:]]+\*?[a-z_][a-z0-9_]*(\[[^]]*\])?[[:space:]]*(=[^=(]*)?;' "$dir"/*.c | grep -v 'const')
    if [ -n "$globals" ]; then echo "gossip/ has mutable file-scope state:"; echo "$globals"; bad=1; fi
    return $bad
}

# The check must be able to fail: a planted impure file has to be caught.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#include <time.h>\n#include <uv.h>\nstatic int hits;\nvoid f(void) { hits++; free(malloc(time(0))); }\n' >"$tmp/bad.c"
if scan "$tmp" >/dev/null; then echo "self-test: the planted violations were not caught"; exit 1; fi
[ "$(scan "$tmp" | grep -c ':')" -ge 3 ] || { echo "self-test: some planted violations were missed"; scan "$tmp"; exit 1; }

scan gossip && echo "gossip/ is pure: ok"
