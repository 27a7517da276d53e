# Sourced by the Go-module build scripts: finds a Go toolchain (the machine's /usr/local/go
# when it is not on PATH) and keeps its module and build caches outside the repository.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "no Go toolchain found: install Go 1.26 or later (the modules' go.mod asks for 1.26)" >&2
  exit 2
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export GOFLAGS="${GOFLAGS:-}"

# pinned_version MODULE GO_MOD: the version GO_MOD requires MODULE at.
pinned_version() {
  awk -v m="$1" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "$2"
}
