# Sourced by the install scripts: Debian packages installed the one way they all need.
#   apt_install WHO WHAT PACKAGE...   WHO names the caller, WHAT says what is missing and
#                                     how to get it without apt-get (the error's words)
# Returns 3 (and says so) where apt-get is not available; runs through sudo when not root.
# APT_SUDO is "sudo" or empty, for a caller's own root-only steps around the install.

APT_SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    APT_SUDO="sudo"
fi

apt_install() {
    local who="$1" what="$2"
    shift 2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: apt-get not available; $what" >&2
        return 3
    fi
    $APT_SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $APT_SUDO apt-get install -y --no-install-recommends "$@"
}
