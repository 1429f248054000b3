#!/usr/bin/env bash
# Builds the shoal of an earlier release (default 254a909, the last release
# in format 1) for the upgrade and mixed-version tests, from this
# repository's own history: target/old-release/shoal-<rev>. It shares the
# target dir, so only the shoal crate itself is compiled again.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-254a909}
out=target/old-release/shoal-$rev
if [ -x "$out" ]; then
  exit 0
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  echo "old-release: commit $rev is not in this clone's history (a shallow clone? run \`git fetch --unshallow\`)" >&2
  exit 1
fi
src=target/old-release/src-$rev
rm -rf "$src"
mkdir -p "$src"
git archive "$rev" | tar -x -C "$src"
# The build script would ask git, which finds this repository's HEAD.
SHOAL_GIT_COMMIT=$rev cargo build --locked --quiet --manifest-path "$src/Cargo.toml" \
  --target-dir target --bin shoal
cp target/debug/shoal "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$src"
echo "old-release: $out ($("$out" --version))"
