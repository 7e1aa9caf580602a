#!/usr/bin/env bash
# Install Kamailio (Debian's packages), SIPp, and the http_async_client module that Debian does
# not package, built from Debian's own kamailio source package of the installed version.
#
# Idempotent: when Kamailio is installed and a config loading http_async_client passes
# `kamailio -c`, it exits within a second or two. Non-interactive; needs root (or sudo).
#
#   bash kamailio/install.sh            # install what is missing
#   bash kamailio/install.sh --rebuild  # rebuild and reinstall http_async_client
#   bash kamailio/install.sh --profile  # also linux-perf, for cps-sweep.sh PERF_MODE=...
#
# Why build from the Debian source package: Kamailio refuses to load a module whose version
# string or compile-flags string differs from the core's, so the module must be compiled with
# exactly the flags Debian used (debian/rules: dpkg-buildflags with hardening=+all,
# -DVERSION_NODATE, the same prefix, LIBDIR and cfg_target).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_dir="$here/.build"
rebuild=0 profile=0
for arg in "$@"; do
    case $arg in
        --rebuild) rebuild=1 ;;
        --profile) profile=1 ;;
        *) printf '[install] unknown argument %s (--rebuild, --profile)\n' "$arg" >&2; exit 2 ;;
    esac
done

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "run as root (or install sudo)"
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# kamailio carries tm, rtjson's helpers, drouting and db_text (the sweep's in-process baseline);
# -json-modules jansson and rtjson; -utils-modules http_client (C4_HTTP_SYNC)
runtime_pkgs=(kamailio kamailio-json-modules kamailio-extra-modules kamailio-utils-modules sip-tester)
# used by kamailio/tests/run.sh and cps-sweep.sh (python3 for HTTP checks, ss for port checks)
test_pkgs=(python3 iproute2)
# Load generators for kamailio/cps-sweep.sh; useful, not required.
optional_pkgs=(wrk hyperfine)
build_pkgs=(libcurl4-openssl-dev libevent-dev pkg-config dpkg-dev build-essential)
# --profile: perf, for the profile of kamailio/cps-sweep.sh (PERF_MODE=...)
profile_pkgs=(linux-perf)

module_dir() {
    local tm
    tm=$(dpkg -L kamailio 2>/dev/null | grep -m1 '/kamailio/modules/tm\.so$' || true)
    [[ -n "$tm" ]] || die "cannot find Kamailio's module directory (is the kamailio package installed?)"
    dirname "$tm"
}

# `kamailio -c` on a minimal config that loads the module: proves the .so is found and that its
# version and compile flags are accepted by the core.
check_module_loads() {
    local cfg
    cfg=$(mktemp /tmp/c4route-kamcheck.XXXXXX.cfg)
    cat >"$cfg" <<'EOF'
#!KAMAILIO
loadmodule "pv.so"
loadmodule "tm.so"
loadmodule "http_async_client.so"
request_route { exit; }
EOF
    local rc=0
    kamailio -c -f "$cfg" >/tmp/c4route-kamcheck.log 2>&1 || rc=$?
    rm -f "$cfg"
    return $rc
}

apt_updated=0
apt_update_once() {
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        apt_updated=1
    fi
}

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

if [[ $profile -eq 1 ]]; then
    mapfile -t need < <(missing_pkgs "${profile_pkgs[@]}")
    if [[ ${#need[@]} -gt 0 ]]; then
        apt_update_once
        log "apt-get install (profile) ${need[*]}"
        $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

# --- fast path -------------------------------------------------------------------------------
if [[ $rebuild -eq 0 ]] && command -v kamailio >/dev/null && command -v sipp >/dev/null \
    && [[ -z "$(missing_pkgs "${runtime_pkgs[@]}" "${test_pkgs[@]}")" ]] \
    && [[ -f "$(module_dir)/http_async_client.so" ]] && check_module_loads; then
    log "already installed: $(kamailio -v | sed -n 's/^version: //p'), http_async_client loads; nothing to do"
    exit 0
fi

# --- 1. Debian packages ----------------------------------------------------------------------
mapfile -t need < <(missing_pkgs "${runtime_pkgs[@]}" "${test_pkgs[@]}" "${build_pkgs[@]}")
if [[ ${#need[@]} -gt 0 ]]; then
    apt_update_once
    log "apt-get install ${need[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
mapfile -t need < <(missing_pkgs "${optional_pkgs[@]}")
if [[ ${#need[@]} -gt 0 ]]; then
    log "apt-get install (optional) ${need[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || log "optional packages not installed (only kamailio/cps-sweep.sh may use them)"
fi

# The package enables a kamailio service with Debian's sample config; the suite and the sweep run
# their own Kamailio on loopback ports, so stop the packaged one if the init system started it.
if command -v systemctl >/dev/null && systemctl is-active --quiet kamailio 2>/dev/null; then
    log "stopping and disabling the packaged kamailio service"
    $SUDO systemctl disable --now kamailio || true
fi

kam_version=$(dpkg-query -W -f='${Version}' kamailio)
mdir=$(module_dir)
log "Kamailio package $kam_version, modules in $mdir"

if [[ $rebuild -eq 0 && -f "$mdir/http_async_client.so" ]] && check_module_loads; then
    log "http_async_client already installed and loads"
    exit 0
fi

# --- 2. deb-src entry ------------------------------------------------------------------------
have_source() {
    # not `| grep -q`: with pipefail, grep's early exit makes apt-cache die of SIGPIPE and the
    # pipeline fail at random (about half the time on a fresh machine)
    local src
    src=$(apt-cache showsrc kamailio 2>/dev/null || true)
    grep -qx "Version: $kam_version" <<<"$src"
}
if ! have_source; then
    apt_update_once
fi
if ! have_source; then
    if [[ -f /etc/apt/sources.list.d/debian.sources ]] \
        && grep -q '^Types:.*\bdeb\b' /etc/apt/sources.list.d/debian.sources; then
        # deb822 (bookworm's default): the same stanzas with Types: deb-src.
        log "adding deb-src stanzas mirroring /etc/apt/sources.list.d/debian.sources"
        sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            | $SUDO tee /etc/apt/sources.list.d/c4route-deb-src.sources >/dev/null
    elif [[ -f /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list; then
        log "adding deb-src lines mirroring /etc/apt/sources.list"
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list \
            | $SUDO tee /etc/apt/sources.list.d/c4route-deb-src.list >/dev/null
    else
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        log "no Debian apt source found; adding deb-src for $codename"
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$codename" "$codename" | $SUDO tee /etc/apt/sources.list.d/c4route-deb-src.sources >/dev/null
    fi
    log "apt-get update (with deb-src)"
    $SUDO apt-get update -qq
    have_source || die "apt has no source package kamailio=$kam_version (installed version); cannot build http_async_client"
fi

# --- 3. fetch and build ----------------------------------------------------------------------
upstream=${kam_version#*:}
upstream=${upstream%-*}
src="$build_dir/kamailio-$upstream"
mkdir -p "$build_dir"
stamp="$build_dir/.source-$kam_version"
if [[ ! -f "$stamp" || ! -d "$src" ]]; then
    log "apt-get source kamailio=$kam_version into $build_dir"
    rm -rf "$src"
    (cd "$build_dir" && apt-get source -q "kamailio=$kam_version" >"$build_dir/apt-source.log" 2>&1) \
        || { tail -20 "$build_dir/apt-source.log" >&2; die "apt-get source failed"; }
    [[ -d "$src" ]] || die "expected $src after apt-get source"
    touch "$stamp"
fi

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
export DEB_BUILD_MAINT_OPTIONS=hardening=+all   # as debian/rules
cc_opts="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -DVERSION_NODATE"
ld_opts="$(dpkg-buildflags --get LDFLAGS)"
so="$src/src/modules/http_async_client/http_async_client.so"
log "make cfg (Debian's flags) and make modules modules=modules/http_async_client"
(
    cd "$src"
    rm -f "$so"
    make cfg quiet=verbose prefix=/usr cfg_target=/etc/kamailio/ FLAVOUR=kamailio \
        CC_EXTRA_OPTS="$cc_opts" LD_EXTRA_OPTS="$ld_opts" LIBDIR="lib/$multiarch" \
        include_modules=http_async_client
    make modules modules=modules/http_async_client
) >"$build_dir/build.log" 2>&1 || { tail -30 "$build_dir/build.log" >&2; die "build failed (log: $build_dir/build.log)"; }
[[ -f "$so" ]] || die "build produced no $so"

# --- 4. verify version and flags strings against the core ------------------------------------
core_ver=$(kamailio -v | sed -n 's/^version: //p' | sed 's/[[:space:]]*$//')
core_flags=$(kamailio -v | sed -n 's/^flags: //p' | sed 's/[[:space:]]*$//')
# (no `strings | grep -q` pipe: with pipefail, grep's early exit makes strings fail on SIGPIPE)
so_strings=$(strings -a "$so")
grep -qxF "$core_ver" <<<"$so_strings" \
    || die "module version string differs from the core's ($core_ver)"
grep -qxF "$core_flags" <<<"$so_strings" \
    || die "module compile-flags string differs from the core's ($core_flags)"
log "module version and compile flags match the core ($core_ver)"

# --- 5. install and check --------------------------------------------------------------------
$SUDO install -m 0644 "$so" "$mdir/http_async_client.so"
log "installed $mdir/http_async_client.so"
if check_module_loads; then
    log "kamailio -c with http_async_client: OK"
else
    cat /tmp/c4route-kamcheck.log >&2
    die "kamailio -c failed with the new module"
fi
