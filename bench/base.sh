# shellcheck shell=bash
# Sourced by the before/after benchmarks (compare.sh, startup.sh,
# audit-scale.sh): the release binaries of another revision, built once in a
# temporary detached worktree into target/bench-base/<sha>/ and reused by
# later runs of any of them.
#
# base_build SHA TAG: sets base_bin to the folder of SHA's release binaries.
# While it builds, base_src names the temporary worktree, so the caller's
# EXIT trap can remove it if the build is interrupted; empty again after.
# Needs repo (the checkout) set.
# (repo comes from, and base_bin/base_src go to, the sourcing script.)
# shellcheck disable=SC2154,SC2034
base_build() {
  local sha=$1 tag=$2
  local target="$repo/target/bench-base/$sha"
  base_bin="$target/release"
  if [[ -f $target/.built ]]; then
    echo "$tag: reusing the base build in $target" >&2
    return
  fi
  mkdir -p "$repo/target"
  base_src=$(mktemp -d "$repo/target/bench-base-src.XXXXXX")
  rmdir "$base_src"
  echo "$tag: building base $sha in a temporary worktree ($base_src)" >&2
  git -C "$repo" worktree add --quiet --detach "$base_src" "$sha"
  (cd "$base_src" && CARGO_TARGET_DIR="$target" cargo build --release --bins --quiet)
  touch "$target/.built"
  git -C "$repo" worktree remove --force "$base_src"
  base_src=""
}
