#!@busybox@/bin/sh
# Activation: what NixOS's activation script and units do, reduced to what cairn checks.
# /etc, the boot partition, network (DHCP), sshd with the host key cairn seeded, sops
# secrets decrypted with the age key cairn seeded, then a marker on the serial console.
export PATH=@out@/sw/bin
system=@out@
console=/dev/ttyS0
say() { echo "cairn-test-system: $*" | tee -a "$console" >/dev/null; }

ln -sfn "$system" /run/current-system
hostname "$(cat "$system/hostname")"
cat "$system/hostname" >/etc/hostname
for d in /bin /usr/bin; do
    if [ -L "$d" ] || [ ! -e "$d" ]; then
        mkdir -p "$(dirname "$d")"
        ln -sfn /run/current-system/sw/bin "$d"
    fi
done
cat >/etc/passwd <<PASSWD
root:x:0:0:root:/root:/run/current-system/sw/bin/sh
sshd:x:74:74:sshd:/var/empty:/run/current-system/sw/bin/false
PASSWD
echo /run/current-system/sw/bin/sh >/etc/shells
printf 'root:x:0:\nsshd:x:74:\nnixbld:x:30000:\n' >/etc/group
printf 'root:*:1::::::\n' >/etc/shadow
chmod 600 /etc/shadow
echo 'export PATH=/run/current-system/sw/bin' >/etc/profile
mkdir -p /root/.ssh /var/empty /etc/ssh
cp "$system/etc/ssh/authorized_keys" /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
chmod 700 /root /root/.ssh

mkdir -p /boot
if boot=$(findfs LABEL=BOOT 2>/dev/null); then
    awk '$2 == "/boot" { found = 1 } END { exit !found }' /proc/mounts || mount -t vfat -o umask=0077 "$boot" /boot || say "cannot mount /boot"
fi

ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s "$system/udhcpc.script" -b -t 20 -T 1 -S || say "DHCP failed"

mkdir -p /run/dropbear
key=/etc/ssh/ssh_host_ed25519_key
if [ -f "$key" ]; then
    dropbearconvert openssh dropbear "$key" /run/dropbear/host_ed25519 >/dev/null 2>&1 ||
        say "cannot read the host key $key"
else
    say "no host key at $key: generating one (cairn seeds it; verify will notice)"
    dropbearkey -t ed25519 -f /run/dropbear/host_ed25519 >/dev/null 2>&1
fi
dropbear -r /run/dropbear/host_ed25519 -p 22 -s -P /run/dropbear.pid && say "sshd started"

mkdir -p /run/secrets
chmod 751 /run/secrets
for f in "$system"/secrets/*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    name=${name%.*}
    if (umask 077 && SOPS_AGE_KEY_FILE=/var/lib/sops-nix/key.txt HOME=/root \
        sops --decrypt "$f" >"/run/secrets/$name.tmp" 2>"/run/secrets/.$name.err"); then
        mv "/run/secrets/$name.tmp" "/run/secrets/$name"
        rm -f "/run/secrets/.$name.err"
        say "secret $name decrypted to /run/secrets/$name"
    else
        rm -f "/run/secrets/$name.tmp"
        say "cannot decrypt secret $name: $(tail -n 1 "/run/secrets/.$name.err")"
    fi
done

say "booted $system"
