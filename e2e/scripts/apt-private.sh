# Sourced by install-deps.sh and vm-image.sh: apt with a private sources list,
# lists and cache under $deps/apt, so the system's apt configuration is never
# changed. Expects $deps and a log function.

# The Debian mirror the system already uses, so no host is written down here.
debian_mirror() {
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null \
            | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || { log "no Debian mirror found in the apt configuration"; return 1; }
  printf '%s\n' "$uri"
}

# apt_setup NAME SUITE...: a sources list of each SUITE's main component under
# $deps/apt/NAME, with its package lists fetched; sets apt_opts (to pass to
# apt-get and apt-cache) and apt_dir.
apt_setup() {
  local name=$1 mirror suite
  shift
  apt_dir=$deps/apt/$name
  mirror=$(debian_mirror)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  : >"$apt_dir/sources.list"
  for suite in "$@"; do
    printf 'deb %s %s main\n' "$mirror" "$suite" >>"$apt_dir/sources.list"
  done
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o "APT::Sandbox::User=root")
  log "fetching the package lists of $*"
  apt-get "${apt_opts[@]}" -o "Debug::NoLocking=1" update -qq
}
