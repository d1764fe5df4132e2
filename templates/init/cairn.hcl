# The inventory of this fleet: which machines exist, where they run, how their disks are
# laid out and who may read which secrets. `cairn plan` shows what would change;
# `cairn bootstrap host web1` creates the VM, installs NixOS from ./flake.nix on it and
# verifies that it boots with the keys cairn generated for it.

# Local QEMU VMs, to try the fleet on this machine before ordering cloud servers.
provider "qemu" "local" {
  accel     = "auto"
  cache_dir = ".cairn/qemu"
  memory    = 2048
  cpus      = 2
  # The stock image the VMs boot: a local file, or a URL pinned by the checksum its
  # project publishes (Debian: SHA512SUMS in the same dated folder). Downloaded once into
  # ~/.cache/cairn and checked before use.
  # image        = "https://cloud.debian.org/images/cloud/trixie/<serial>/debian-13-genericcloud-amd64-<serial>.qcow2"
  # image_sha512 = "<the file's line in SHA512SUMS>"
  # The kexec installer bundle (nix-community/nixos-images), likewise:
  # installer        = "https://github.com/nix-community/nixos-images/releases/download/<tag>/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz"
  # installer_sha256 = "<the sha256 GitHub shows for that release file>"
}

# GPT that boots both ways: a BIOS boot partition for GRUB on legacy firmware, an ESP for
# UEFI, and root. flake.nix finds the filesystems by these labels.
disk_layout "vm" {
  device = "/dev/vda"

  partition "bios" {
    type = "bios_boot"
    size = "1M"
  }
  partition "esp" {
    type       = "esp"
    size       = "512M"
    filesystem = "vfat"
    label      = "ESP"
    mountpoint = "/boot"
  }
  partition "root" {
    type       = "filesystem"
    size       = "rest"
    filesystem = "ext4"
    label      = "nixos"
    mountpoint = "/"
  }
}

# The people who may decrypt every secret. Run `cairn secrets keygen` to create your age
# key (kept outside this repository); it prints your public recipient, age1..., which goes
# here:
#
# admin "you" {
#   age = "age1..."
# }

host "web1" {
  provider    = "local"
  flake       = ".#web1"
  disk_layout = "vm"
  tags        = ["web"]

  health_check "systemd_unit" {
    unit = "comin.service"
  }
}

# web1 may read its own secrets file (admins read everything). Create it with
# `cairn secrets edit secrets/web1.yaml` once an admin is listed above.
secrets "secrets/web1.yaml" {
  hosts = ["web1"]
}
