#!/bin/sh
# ClawFleet agent installer for Linux and macOS, served by the fleet server at @FLEET_URL@/install.sh.
#
#   curl -fsSL @FLEET_URL@/install.sh | sh                 # asks for the enrollment token
#   curl -fsSL @FLEET_URL@/install.sh | sh -s -- --token-file token.txt
#   curl -fsSL @FLEET_URL@/install.sh | sh -s -- --dry-run # prints what it would do
#
# The token never goes on a command line (it would show in 'ps' and the shell history): it is read
# from the terminal (not echoed) or from --token-file (a file, '-' for stdin). Running this again
# upgrades the agent in place and keeps its enrollment (--reenroll asks for a new token).
#
# As root (--system, the default for root): the .deb (Debian, Ubuntu) or .rpm (Fedora, RHEL, SUSE), or
# the one-folder build in /usr/local/lib/clawfleet-agent elsewhere; config /etc/clawfleet-agent/agent.json;
# the systemd service clawfleet-agent runs as the user whose OpenClaw it watches (--service-user, default
# $SUDO_USER when that user has ~/.openclaw) or as the dedicated user clawfleet-agent.
# As a user (--user): the one-folder build in ~/.local/share/clawfleet-agent, ~/.local/bin/clawfleet-agent,
# a systemd user service (headless) or the tray at login (desktop).
set -eu

FLEET_URL='@FLEET_URL@'
OFFERED='@OFFERED_VERSION@'
# format arch name sha256, one package per line (the newest version the fleet holds)
PACKAGES='@PACKAGES@'

dry=0; mode=""; token_file=""; service_user=""; reenroll=0; headless=""
usage() {
  cat <<EOF
usage: install.sh [--system | --user] [--token-file FILE|-] [--service-user NAME] [--headless | --tray]
                  [--reenroll] [--dry-run]
EOF
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --system) mode=system ;;
    --user) mode=user ;;
    --token-file) shift; token_file="${1:?--token-file needs a file name or -}" ;;
    --token-file=*) token_file="${1#*=}" ;;
    --service-user) shift; service_user="${1:?--service-user needs a user name}" ;;
    --service-user=*) service_user="${1#*=}" ;;
    --reenroll) reenroll=1 ;;
    --headless) headless=1 ;;
    --tray) headless=0 ;;
    -h|--help) usage; exit 0 ;;
    --token|--token=*|cfe1.*) echo "error: never put the token on the command line; use --token-file FILE or paste it when asked" >&2; exit 2 ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
run() {  # run a command, or only print it with --dry-run
  if [ "$dry" = 1 ]; then say "would run: $*"; else "$@"; fi
}

[ -n "$OFFERED" ] || die "the fleet at $FLEET_URL offers no agent packages yet (the admin adds them: clawfleet-server release add FILE)"

uid="$(id -u)"
[ -n "$mode" ] || { [ "$uid" = 0 ] && mode=system || mode=user; }
[ "$mode" = user ] && [ "$uid" = 0 ] && die "--user installs into your own home; run it as that user, not root"
[ "$mode" = system ] && [ "$uid" != 0 ] && die "--system needs root: curl -fsSL $FLEET_URL/install.sh | sudo sh"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=macos ;;
  *) die "$(uname -s) is not supported by install.sh (Windows: use install.ps1 from the same server)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) arch=x86_64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "no agent build for $(uname -m)" ;;
esac

if [ "$mode" = system ] && [ "$os" = linux ]; then
  if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then fmt=deb
  elif command -v rpm >/dev/null 2>&1 && ! command -v dpkg >/dev/null 2>&1; then fmt=rpm
  else fmt=tar.gz; fi
elif [ "$mode" = system ]; then fmt=pkg
else fmt=tar.gz; fi

pick() {  # prints "name sha256" of the package for format $1 on this machine
  printf '%s\n' "$PACKAGES" | while read -r f a n s; do
    [ "$f" = "$1" ] || continue
    case "$f" in
      tar.gz) case "$n" in *"-$os-$arch.tar.gz"|*"-$os-universal2.tar.gz") printf '%s %s\n' "$n" "$s"; break ;; esac ;;
      *) { [ "$a" = "$arch" ] || [ "$a" = universal2 ]; } && { printf '%s %s\n' "$n" "$s"; break; } ;;
    esac
  done
}
found="$(pick "$fmt")"
if [ -z "$found" ] && [ "$fmt" != tar.gz ] && [ "$os" = linux ]; then fmt=tar.gz; found="$(pick tar.gz)"; fi
[ -n "$found" ] || die "the fleet has no $fmt package of $OFFERED for $os/$arch"
pkg_name="${found% *}"; pkg_sha="${found#* }"

if [ "$mode" = system ]; then
  config=/etc/clawfleet-agent/agent.json
  [ "$os" = macos ] && config="/Library/Application Support/ClawFleet/agent.json"
  if [ "$os" = macos ]; then logs="/Library/Logs/ClawFleet/agent.log"; else logs="/var/log/clawfleet-agent/agent.log"; fi
  tar_root=/usr/local/lib/clawfleet-agent; bin_dir=/usr/local/bin
else
  if [ "$os" = macos ]; then
    config="$HOME/Library/Application Support/clawfleet/agent.json"; logs="$HOME/Library/Logs/clawfleet/agent.log"
  else
    config="${XDG_CONFIG_HOME:-$HOME/.config}/clawfleet/agent.json"; logs="${XDG_STATE_HOME:-$HOME/.local/state}/clawfleet/log/agent.log"
  fi
  tar_root="${XDG_DATA_HOME:-$HOME/.local/share}/clawfleet-agent"; bin_dir="$HOME/.local/bin"
fi
case "$fmt" in
  deb|rpm|pkg) agent=/usr/bin/clawfleet-agent; [ "$os" = macos ] && agent=/usr/local/bin/clawfleet-agent ;;
  *) agent="$tar_root/current/clawfleet-agent" ;;
esac

installed=""
if [ -x "$agent" ]; then installed="$("$agent" --version 2>/dev/null | awk '{print $2}')" || installed=""; fi
enrolled=0; [ -f "$config" ] && enrolled=1

if [ -z "$headless" ]; then
  if [ "$mode" = user ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ "$os" = macos ]; }; then headless=0; else headless=1; fi
fi
if [ "$mode" = system ] && [ "$os" = linux ] && [ -z "$service_user" ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
  [ -n "$home" ] && [ -d "$home/.openclaw" ] && service_user="$SUDO_USER"
fi

say "ClawFleet agent $OFFERED from $FLEET_URL"
say "  this machine: $os/$arch, ${mode} install ($fmt: $pkg_name)"
if [ -n "$installed" ]; then say "  installed: $installed -> upgrading in place"; else say "  installed: none"; fi
if [ "$enrolled" = 1 ] && [ "$reenroll" = 0 ]; then say "  enrollment: kept ($config)"; else say "  enrollment: token needed -> $config"; fi
[ "$mode" = system ] && [ "$os" = linux ] && say "  service runs as: ${service_user:-clawfleet-agent (dedicated user)}"

token=""
if { [ "$enrolled" = 0 ] || [ "$reenroll" = 1 ]; } && [ "$dry" = 0 ]; then
  if [ -n "$token_file" ]; then
    if [ "$token_file" = - ]; then token="$(cat)"; else token="$(cat "$token_file")" || die "cannot read $token_file"; fi
  elif [ -r /dev/tty ] && (: </dev/tty) 2>/dev/null; then
    printf 'Paste the enrollment token (from the dashboard or clawfleet-server device add), then Enter: ' >/dev/tty
    stty -echo </dev/tty 2>/dev/null || true
    IFS= read -r token </dev/tty || true
    stty echo </dev/tty 2>/dev/null || true
    printf '\n' >/dev/tty
  else
    die "no terminal to ask for the token: pass --token-file FILE (or - for stdin)"
  fi
  token="$(printf '%s' "$token" | tr -d ' \r\n\t')"
  case "$token" in cfe1.*) ;; *) die "that is not an enrollment token (it starts with cfe1.)" ;; esac
fi

tmp="$(mktemp -d 2>/dev/null || mktemp -d -t clawfleet)"  # mode 0700: the download waits here
trap 'rm -rf "$tmp"' EXIT INT TERM
umask 022  # the installed program is readable by everyone (the service user too); enroll writes its config 0600

download() {
  say "==> downloading $pkg_name"
  if command -v curl >/dev/null 2>&1; then run curl -fsSL -o "$tmp/$pkg_name" "$FLEET_URL/agent/files/$pkg_name"
  elif command -v wget >/dev/null 2>&1; then run wget -q -O "$tmp/$pkg_name" "$FLEET_URL/agent/files/$pkg_name"
  else die "need curl or wget"; fi
  [ "$dry" = 1 ] && return 0
  if command -v sha256sum >/dev/null 2>&1; then got="$(sha256sum "$tmp/$pkg_name" | awk '{print $1}')"
  else got="$(shasum -a 256 "$tmp/$pkg_name" | awk '{print $1}')"; fi
  [ "$got" = "$pkg_sha" ] || die "SHA-256 of $pkg_name is $got, the fleet says $pkg_sha: download damaged or tampered with"
  say "    SHA-256 ok ($pkg_sha)"
}

stop_background() {  # an agent this script started without a service manager
  pidfile="$1"
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    run kill "$pid"
    i=0; while [ "$dry" = 0 ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  fi
  run rm -f "$pidfile"
}

install_tar() {
  version="$OFFERED"
  run mkdir -p "$tar_root/versions" "$bin_dir"
  run rm -rf "$tar_root/versions/$version.new"
  run mkdir -p "$tar_root/versions/$version.new"
  run tar -xzf "$tmp/$pkg_name" -C "$tar_root/versions/$version.new" --strip-components=1
  run rm -rf "$tar_root/versions/$version"
  run mv "$tar_root/versions/$version.new" "$tar_root/versions/$version"
  run ln -sfn "versions/$version" "$tar_root/current"
  run ln -sfn "$tar_root/current/clawfleet-agent" "$bin_dir/clawfleet-agent"
  if [ "$dry" = 0 ]; then
    mkdir -p "$tar_root/cache" && cp "$tmp/$pkg_name" "$tar_root/cache/"  # kept for a rollback
  fi
}

systemd_up() { [ -d /run/systemd/system ]; }
user_systemd_up() { systemd_up && systemctl --user show-environment >/dev/null 2>&1; }

download
case "$fmt" in
  deb) run dpkg -i "$tmp/$pkg_name" ;;  # depends on libc6 and passwd only: nothing for apt to resolve
  rpm) run rpm -U --replacepkgs "$tmp/$pkg_name" ;;
  pkg) run installer -pkg "$tmp/$pkg_name" -target / ;;
  tar.gz) install_tar ;;
esac
if [ "$mode" = system ] && [ "$dry" = 0 ] && [ "$fmt" != tar.gz ]; then
  mkdir -p /var/cache/clawfleet-agent && cp "$tmp/$pkg_name" /var/cache/clawfleet-agent/  # kept for a rollback
fi
[ "$dry" = 1 ] || say "    installed: $("$agent" --version)"

if [ -n "$token" ]; then
  say "==> enrolling"
  if [ "$mode" = system ]; then
    printf '%s\n' "$token" | "$agent" enroll --system --config "$config" -
  else
    printf '%s\n' "$token" | "$agent" enroll --config "$config" -
  fi
  token=""
fi

say "==> starting the agent"
data_pid=""; run_as=""
if [ "$mode" = system ] && [ "$os" = linux ]; then
  set -- install-service --system --config "$config"
  [ -n "$service_user" ] && set -- "$@" --user-name "$service_user"
  if systemd_up; then
    run "$agent" "$@"
    run systemctl restart clawfleet-agent.service
    say "running as the systemd service clawfleet-agent; logs: $logs and journalctl -u clawfleet-agent"
  else
    run "$agent" "$@" --no-enable
    data_pid=/var/lib/clawfleet-agent/agent.pid
    run_as="${service_user:-clawfleet-agent}"
    id "$run_as" >/dev/null 2>&1 || run_as=""
  fi
elif [ "$mode" = system ]; then
  run "$agent" install-service --system --config "$config"
  say "running as the launchd daemon ai.clawfleet.agent; logs: $logs"
elif [ "$headless" = 0 ]; then
  run "$agent" autostart on --config "$config"
  data_pid="$tar_root/agent.pid"
  say "the tray icon starts at every login (clawfleet-agent autostart off stops that)"
elif [ "$os" = linux ] && user_systemd_up; then
  run "$agent" install-service --config "$config"
  run systemctl --user restart clawfleet-agent.service
  say "running as the systemd user service clawfleet-agent; logs: $logs"
  say "to keep it running while you are logged out: loginctl enable-linger $(id -un)"
elif [ "$os" = macos ]; then
  run "$agent" install-service --config "$config"
  say "running as the launchd agent ai.clawfleet.agent; logs: $logs"
else
  data_pid="$tar_root/agent.pid"
fi
if [ -n "$data_pid" ]; then  # no service manager (containers, WSL without systemd): run it in the background
  stop_background "$data_pid"
  run mkdir -p "$(dirname "$data_pid")"
  if [ "$headless" = 0 ]; then set -- run --autostart --config "$config"; else set -- run --headless --config "$config"; fi
  if [ "$dry" = 1 ]; then
    say "would run: $agent $* (in the background)"
  else
    if [ -n "$run_as" ]; then  # as the service would: its user, its data and log dirs
      mkdir -p /var/log/clawfleet-agent && chown "$run_as" /var/lib/clawfleet-agent /var/log/clawfleet-agent
      gid="$(getent group clawfleet-agent | cut -d: -f3)"; [ -n "$gid" ] || gid="$(id -g "$run_as")"
      HOME="$(getent passwd "$run_as" | cut -d: -f6)" CLAWFLEET_AGENT_DATA_DIR=/var/lib/clawfleet-agent \
        CLAWFLEET_AGENT_LOG_DIR=/var/log/clawfleet-agent \
        nohup setpriv --reuid="$run_as" --regid="$gid" --init-groups "$agent" "$@" >/dev/null 2>&1 &
    else
      nohup "$agent" "$@" >/dev/null 2>&1 &
    fi
    echo $! > "$data_pid"
  fi
  say "no service manager here: started in the background (pid file $data_pid); it does not start at boot"
  say "logs: $logs"
fi
[ "$dry" = 1 ] && say "dry run: nothing was changed"
if [ "$mode" = system ]; then say "done. check it with: sudo $agent status --system"; else say "done. check it with: $agent status"; fi
