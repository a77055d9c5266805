#!/usr/bin/env bash
# `make dist`: release archives of kubectl-blame for krew, with sha256 sums and the krew
# manifest, in DIST_DIR (default dist/):
#   kubectl-blame-vVERSION-linux-amd64.tar.gz   kubectl-blame, kubectl_complete-blame
#   kubectl-blame-vVERSION-linux-arm64.tar.gz   when the toolchain can cross-build (below)
#   SHA256SUMS                                  sha256sum -c format
#   blame.yaml                                  the krew manifest, for the platforms built
# linux/arm64 needs `rustup target add aarch64-unknown-linux-gnu` and a C cross compiler
# (`aarch64-linux-gnu-gcc`, Debian's gcc-aarch64-linux-gnu: ring has C and assembly);
# without them it is skipped, and the manifest lists linux/amd64 only.
# Settings (environment or make variables): VERSION (default: the workspace version),
# DIST_DIR, DIST_PROFILE (cargo profile, default release), RELEASE_URL (where the archives
# will be downloaded from), CARGO, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)}"
dist="${DIST_DIR:-dist}"
profile="${DIST_PROFILE:-release}"
cargo="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-target}"
release_url="${RELEASE_URL:-https://github.com/logistis/logistis/releases/download/v$version}"
# cargo names the dev profile's directory `debug`.
profile_dir="$profile"
[ "$profile" = dev ] && profile_dir=debug

mkdir -p "$dist"
rm -f "$dist"/kubectl-blame-v*.tar.gz "$dist/SHA256SUMS" "$dist/blame.yaml"
built=()
for platform in linux/amd64 linux/arm64; do
    case "$platform" in
        linux/amd64) triple=x86_64-unknown-linux-gnu ;;
        linux/arm64) triple=aarch64-unknown-linux-gnu ;;
    esac
    host="$(rustc -vV | sed -n 's/^host: //p')"
    env=()
    if [ "$triple" != "$host" ]; then
        # Only x86_64 hosts are described here; elsewhere build on each platform.
        [ "$host" = x86_64-unknown-linux-gnu ] || { echo "dist: skipping $platform on $host" >&2; continue; }
        if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
            echo "dist: skipping $platform: the Rust target $triple is not installed (rustup target add $triple)" >&2
            continue
        fi
        linker="aarch64-linux-gnu-gcc"
        if ! command -v "$linker" >/dev/null 2>&1; then
            echo "dist: skipping $platform: no C cross compiler $linker (apt-get install gcc-aarch64-linux-gnu)" >&2
            continue
        fi
        upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
        env=("CARGO_TARGET_${upper}_LINKER=$linker" "CC_${triple//-/_}=$linker")
    fi
    # The host's build goes where `cargo build` puts it anyway (and is reused from there).
    if [ "$triple" = "$host" ]; then
        "$cargo" build --locked --quiet --profile "$profile" -p kubectl-blame
        binary="$target_dir/$profile_dir/kubectl-blame"
    else
        env "${env[@]}" "$cargo" build --locked --quiet --profile "$profile" --target "$triple" -p kubectl-blame
        binary="$target_dir/$triple/$profile_dir/kubectl-blame"
    fi
    stage="$(mktemp -d)"
    cp "$binary" plugins/kubectl-blame/dist/kubectl_complete-blame "$stage/"
    archive="kubectl-blame-v$version-${platform/\//-}.tar.gz"
    # Reproducible: sorted names, no owners, a fixed time.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - . | gzip -n > "$dist/$archive"
    rm -rf "$stage"
    built+=("$platform")
    (cd "$dist" && sha256sum "$archive" >> SHA256SUMS)
done
if [ "${#built[@]}" -eq 0 ]; then
    echo "dist: nothing built" >&2
    exit 1
fi

# The krew manifest: the template with the platforms built and their sums.
sums=()
for platform in "${built[@]}"; do
    key="${platform/\//_}"
    sum="$(awk -v a="kubectl-blame-v$version-${platform/\//-}.tar.gz" '$2 == a {print $1}' "$dist/SHA256SUMS")"
    sums+=("-e" "s|@SHA256_${key}@|$sum|")
done
awk -v built=" ${built[*]} " '
    /^    # platform: / { keep = index(built, " " $3 " ") > 0; next }
    /^[^ ]/ { keep = 1 }
    keep != 0 || !started { print }
    /^  platforms:/ { started = 1; keep = 0 }
' plugins/kubectl-blame/dist/blame.yaml \
    | sed -e "s|@VERSION@|$version|g" -e "s|@RELEASE_URL@|$release_url|g" "${sums[@]}" \
    > "$dist/blame.yaml"
echo "dist: ${built[*]} in $dist/:"
(cd "$dist" && cat SHA256SUMS)
