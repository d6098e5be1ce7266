#!/bin/sh
# chpasswd(8) shim for the busybox test VM (busybox has no chpasswd): reads user:password
# lines on stdin and rewrites the user's /etc/shadow hash; -e means already crypted.
crypted=
[ "$1" = -e ] && crypted=1
while IFS= read -r line; do
    user=${line%%:*}
    pass=${line#*:}
    grep -q "^$user:" /etc/shadow || { echo "chpasswd: user '$user' does not exist" >&2; exit 1; }
    if [ -n "$crypted" ]; then hash=$pass; else hash=$(printf '%s\n' "$pass" | mkpasswd -m sha512) || exit 1; fi
    awk -F: -v OFS=: -v u="$user" -v h="$hash" '$1 == u { $2 = h } { print }' /etc/shadow > /etc/shadow.new &&
        chmod 600 /etc/shadow.new && mv /etc/shadow.new /etc/shadow || exit 1
done
