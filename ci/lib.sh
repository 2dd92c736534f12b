# Shared helpers for the ci/ scripts. Source it; it changes nothing by itself.

# Installs Debian packages that are not installed yet (apt-get update runs only
# when something is missing, so a prepared machine is not slowed down).
need_debs() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  echo "ci: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Adds rustup targets that are not installed yet.
need_targets() {
  local installed
  installed=$(rustup target list --installed)
  for t in "$@"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
}

# Installs Python packages with pip when an import fails.
need_py() {
  local module=$1 package=$2
  python3 -c "import $module" 2>/dev/null || python3 -m pip install -q "$package"
}

# When the outermost ci script began: `step` prints the time since then, so
# a log shows where a run's minutes went (ci/test aims at 45 on a fresh
# 2-core machine).
export CI_STARTED=${CI_STARTED:-$(date +%s)}

step() {
  local s=$(($(date +%s) - CI_STARTED))
  printf '\n== %s  [%d:%02d]\n' "$*" $((s / 60)) $((s % 60))
}

# Installs a cargo tool at an exact version when it is missing or another
# version (tools that take long to build are built only then). The third
# argument names its program when that is not the package's name.
need_cargo_tool() {
  local tool=$1 version=$2 program=${3:-$1}
  if "$program" --version 2>/dev/null | grep -qF " $version"; then return 0; fi
  echo "ci: installing $tool $version"
  cargo install --quiet --locked "$tool" --version "$version"
}
