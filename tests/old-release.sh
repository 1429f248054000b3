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
# Its own package name, so that cargo keeps its artifacts (and its build
# script's generated code) apart from this build's in the shared target
# dir; the library keeps its name, which the old main.rs uses.
sed -i '0,/^name = "shoal"$/s//name = "shoal-'"$rev"'"/' "$src/Cargo.toml"
printf '\n[lib]\nname = "shoal"\npath = "src/lib.rs"\n' >>"$src/Cargo.toml"
# The build script would ask git, which finds this repository's HEAD.
# Not --locked: the lock file names the package by its old name; every
# dependency stays pinned by it.
SHOAL_GIT_COMMIT=$rev cargo build --quiet --manifest-path "$src/Cargo.toml" \
  --target-dir target --bin shoal
cp target/debug/shoal "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$src"
echo "old-release: $out ($("$out" --version))"
