# Shared by the project's scripts; source it after `cd` to the repository root.

# Installs the Debian packages named, as root; otherwise says what to install and stops.
apt_install() {
    (($#)) || return 0
    local me
    me=$(basename "$0")
    if [[ $(id -u) == 0 ]]; then
        echo "$me: installing $*" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "$me: missing $*; install them (apt-get install $*) or run as root" >&2
        exit 1
    fi
}
