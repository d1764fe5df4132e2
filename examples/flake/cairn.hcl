# The inventory of the example fleet: one web server on Hetzner Cloud.
# cairn reads this file; `cairn plan` shows what would change, `cairn bootstrap host web1`
# orders the server, installs NixOS from ./flake.nix on it and verifies it.

variable "location" {
  description = "Hetzner location for new servers"
  default     = "fsn1"
}

provider "hcloud" "cloud" {
  token    = env("HCLOUD_TOKEN")
  location = var.location
}

# GPT that boots both ways: a BIOS boot partition for GRUB on legacy firmware, an ESP for
# UEFI, and root. Filesystems are found by label (see modules/common.nix).
disk_layout "cloud" {
  device = "/dev/sda"
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
    label      = "root"
    mountpoint = "/"
  }
}

defaults {
  disk_layout = "cloud"
  image       = "debian-12"
  health_check "systemd_unit" {
    unit = "comin.service"
  }
}

# The people who may decrypt every secret. Replace with your own key from
# `cairn secrets keygen` (this one belongs to the example and is public).
admin "example" {
  age = "age1mp9g3390skaeundg3uzq2wvzqswzxmjag5yqvu60nrt2mafa7dpsregtnd"
}

host "web1" {
  provider = "cloud"
  flake    = ".#web1"
  size     = "cx22"
  tags     = ["web", "prod"]
  health_check "file_exists" {
    path = "/run/secrets/comin-token"
  }
}

# Each host reads its own secrets file; admins read everything.
secrets "secrets/web1.yaml" {
  hosts = ["web1"]
}

# Day 2: where web1's comin pulls, and which branch it follows. `cairn gitops sync` writes
# cairn/fleet.json from these blocks; modules/common.nix reads it.
gitops {
  remote    = "https://git.example.com/ops/fleet.git"
  token     = "secrets/web1.yaml"
  token_key = "comin/token"
}

ring "prod" {
  hosts = ["@prod"]
}
