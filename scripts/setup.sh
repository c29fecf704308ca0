#!/usr/bin/env bash
# Idempotent setup of a fresh Debian machine for this project; run as root from anywhere.
# Installs only what is missing (PostgreSQL server, Java 17, Maven, Node.js and npm, python venv support), then
# the project into .venv. Kafka's jars are fetched by `gridgov infra up` on first use, n8n by `gridgov n8n up`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.stamp"
say() { echo "setup: $*"; }

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# the dashboard's end-to-end tests drive Debian's Chromium (browser downloads are not possible here)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# n8n (`gridgov n8n up`) runs on Node.js 20 and is installed with npm into GRID_HOME on first use
command -v npm >/dev/null || missing+=(nodejs npm)
# Debian splits venv's pip bootstrap out of python3 itself
[[ -d "$VENV" ]] || python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)

if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "setup: missing ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "system packages present"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi

if [[ -f "$STAMP" && "$STAMP" -nt "$ROOT/pyproject.toml" ]]; then
    say "python packages up to date (.venv/.stamp is newer than pyproject.toml)"
else
    say "installing the project and its test dependencies into .venv"
    log="$(mktemp)"
    # pip and setuptools are chatty even with -q: show their output only when the install fails
    if ! "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    touch "$STAMP"
fi
# n8n 1.123 needs Node.js >= 20.19 (Debian 12's own nodejs is 18: this machine kind brings 20)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "setup: n8n needs Node.js >= 20.19, found $(node --version)" >&2
    exit 1
fi
# n8n's npm install (about 4 minutes and 1.7 GB, once) is kept in GRID_HOME; later runs find it there
"$VENV/bin/gridgov" n8n install || { echo "setup: installing n8n failed" >&2; exit 1; }
# The Go producer example (tested in `make test`) fetches its modules (franz-go) once into Go's cache.
if command -v go >/dev/null; then
    (cd "$ROOT/examples/go-producer" && go mod download) || { echo "setup: go mod download failed" >&2; exit 1; }
else
    say "no Go toolchain: tests/integration/test_go_producer.py will fail (it builds examples/go-producer)"
fi
say "done; next: $VENV/bin/gridgov infra up"
