# Shared by the scripts in this directory.

step() { echo; echo "==> $*"; }

# rustup does not install the toolchain named in rust-toolchain.toml by itself on every
# machine; do it explicitly (a no-op once installed).
ensure_toolchain() {
    if ! command -v rustup >/dev/null; then
        echo "rustup is required: see https://rustup.rs" >&2
        exit 1
    fi
    rustup toolchain install --no-self-update >/dev/null 2>&1 || rustup toolchain install
}
