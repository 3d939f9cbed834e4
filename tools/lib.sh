# Shared shell helpers for tools/check, tools/demo, tools/guest/build, ...
# Source it; it defines functions and QB_SRCDIR, and changes nothing else.
#
#	. "$(dirname "$0")/lib.sh"		(from tools/)
#
# POSIX sh plus `local`, which dash and bash both have.

# The source tree: this file lives in tools/.
QB_SRCDIR=$(cd "$(dirname "${QB_LIB_SH:-$0}")" && while [ ! -f configure.ac ] && [ "$PWD" != / ]; do cd ..; done; pwd)

qb_log() {
	printf '%s: %s\n' "${QB_PROG:-${0##*/}}" "$*" >&2
}

qb_die() {
	qb_log "$*"
	exit 1
}

# Status of a package in dpkg's database: true only when fully installed.
# "un" (known, not installed) and half-configured states count as missing.
qb_pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# Candidate version apt would install, empty when the name is unknown.
qb_pkg_candidate() {
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2; exit }'
}

# apt-get update at most once per process tree: the package lists on a
# fresh machine may be empty, but refreshing them costs time for nothing
# when everything is already there.
qb_apt_update() {
	[ -n "${QB_APT_UPDATED:-}" ] && return 0
	qb_log "apt-get update"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null ||
	    qb_die "apt-get update failed"
	QB_APT_UPDATED=1
	export QB_APT_UPDATED
}

# qb_need_pkgs PKG...: installs those not installed yet. Nothing runs
# (not even apt-get update) when all are there, so this is cheap to call
# from every tool. --no-install-recommends: we name what we need; the
# recommends of libvirt-daemon-system and qemu pull in hundreds of MB.
qb_need_pkgs() {
	local missing p
	missing=
	for p in "$@"; do
		qb_pkg_installed "$p" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	command -v apt-get >/dev/null 2>&1 ||
	    qb_die "missing packages:$missing (and no apt-get to install them)"
	[ "$(id -u)" -eq 0 ] ||
	    qb_die "missing packages:$missing; run as root or: apt-get install$missing"
	qb_apt_update
	for p in $missing; do
		[ -n "$(qb_pkg_candidate "$p")" ] ||
		    qb_die "package $p is unknown to apt (apt-cache policy $p)"
	done
	qb_log "installing:$missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -q -y \
	    --no-install-recommends $missing >/dev/null ||
	    qb_die "apt-get install$missing failed"
}

# Everything the build, the tests and the tools need on Debian 12.
QB_PKGS="build-essential autoconf automake libtool pkg-config
libevent-dev libjansson-dev libvirt-dev libcmocka-dev libsystemd-dev libseccomp-dev
qemu-system-x86 qemu-utils socat python3 busybox-static cpio
clang libclang-rt-14-dev libfuzzer-14-dev valgrind
iproute2 kmod util-linux libvirt-daemon-system libvirt-daemon-driver-qemu
gnuplot-nox prometheus libnats-dev nats-server openssl
systemd debhelper lintian mandoc fakeroot dpkg-dev"

# qb_kvm_probe [-v]: prints "kvm" when $QB_KVM_DEV (default /dev/kvm) is
# a KVM this user can open read-write, else "tcg"; -v says why on stderr.
# The demo, tools/bench and the tests (qb.kvm_usable) all ask this one
# function, and tests/integration/test_kvm_probe.py runs it against device
# nodes of its own through QB_KVM_DEV.
# It never creates the path: no shell redirection (`<>` and `>` create a
# missing file, and an empty regular /dev/kvm once fooled every later run
# into -accel kvm), only an open(2) without O_CREAT, of a character
# device only. KVM_GET_API_VERSION tells KVM from any other character
# device that opens (/dev/null), so only a working KVM says "kvm".
qb_kvm_probe() {
	local dev out
	dev=${QB_KVM_DEV:-/dev/kvm}
	out=$(python3 -c '
import fcntl, os, stat, sys
p = sys.argv[1]
def no(why):
	print("tcg " + why)
	sys.exit(0)
try:
	st = os.stat(p)
except OSError as e:
	no("%s: %s" % (p, e.strerror))
if not stat.S_ISCHR(st.st_mode):
	no("%s is not a character device" % p)
try:
	fd = os.open(p, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
except OSError as e:
	no("cannot open %s: %s" % (p, e.strerror))
try:
	if not stat.S_ISCHR(os.fstat(fd).st_mode):
		no("%s is not a character device" % p)
	try:
		v = fcntl.ioctl(fd, 0xAE00)	# KVM_GET_API_VERSION
	except OSError as e:
		no("%s is no KVM (KVM_GET_API_VERSION: %s)" % (p, e.strerror))
	if v != 12:
		no("%s: KVM API version %d, not 12" % (p, v))
	print("kvm %s: KVM API version 12" % p)
finally:
	os.close(fd)
' "$dev" 2>&1) || out="tcg python3 failed: $out"
	case $out in
	kvm\ *)	;;
	tcg\ *)	;;
	*)	out="tcg $out" ;;
	esac
	[ "${1:-}" = -v ] && qb_log "accel ${out%% *}: ${out#* }"
	echo "${out%% *}"
}

# Seconds since the epoch, for phase timings.
qb_now() {
	date +%s
}

# Formats a duration in seconds as "1m05s" or "42s".
qb_dur() {
	if [ "$1" -ge 60 ]; then
		printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
	else
		printf '%ds' "$1"
	fi
}

# Makes the build tree's generated files: configure and Makefile.in.
qb_autogen() {
	(cd "$QB_SRCDIR" && ./autogen.sh) >"${1:-/dev/null}" 2>&1
}
