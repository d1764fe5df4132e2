# A small fleet: two web servers and a database at Hetzner Cloud, a build box you already
# own, and a local QEMU VM to try changes on. `cairn hosts` shows it joined with state.

variable "location" {
  description = "Hetzner location for the cloud hosts (override: --var location=hel1 or CAIRN_VAR_location)"
  default     = "fsn1"
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "vm_memory" {
  type        = number
  description = "MiB of RAM for the local test VM"
  default     = 2048
}

locals {
  environment = var.environment
  # A token from the environment, with an empty fallback so `cairn hosts` works without it;
  # the hcloud provider refuses an empty token when it actually calls the API.
  hcloud_token = env("HCLOUD_TOKEN", "")
  ssh_user     = "root"
  common_tags  = ["nixos", local.environment]
}

provider "hcloud" "cloud" {
  token        = local.hcloud_token
  location     = var.location
  ssh_key_name = "cairn-${local.environment}"
}

provider "qemu" "local" {
  accel     = "auto"
  cache_dir = ".cairn/qemu"
  memory    = var.vm_memory
  cpus      = 2
}

provider "existing" "owned" {}

state {
  backend = "file"
  # A team shares state in PostgreSQL instead (see docs/inventory.md, "State"):
  #   backend = "pg"
  #   conn    = env("CAIRN_PG_CONN")
  #   name    = "acme-prod"
}

defaults {
  provider    = "cloud"
  size        = "cx22"
  image       = "debian-12"
  tags        = local.common_tags
  disk_layout = "standard"

  ssh {
    user = local.ssh_user
  }

  health_check "systemd_unit" {
    unit = "comin.service"
  }
}

disk_layout "standard" {
  device = "/dev/sda"

  partition "boot" {
    type = "bios_boot"
    size = "1M"
  }
  partition "esp" {
    type       = "esp"
    size       = "512M"
    label      = "ESP"
    mountpoint = "/boot"
  }
  partition "swap" {
    type = "swap"
    size = "2G"
  }
  partition "root" {
    type       = "filesystem"
    size       = "rest"
    filesystem = "ext4"
    label      = "nixos"
    mountpoint = "/"
  }
}

disk_layout "vm" {
  device = "/dev/vda"

  partition "esp" {
    type = "esp"
    size = "256M"
  }
  partition "root" {
    type       = "filesystem"
    size       = "100%"
    filesystem = "btrfs"
    mountpoint = "/"
  }
}

host "web1" {
  flake    = ".#web1"
  location = var.location
  tags     = ["web"]
  secrets  = ["secrets/web/*.yaml"]

  health_check "command" {
    command = "curl -fsS http://localhost/healthz"
  }
}

host "web2" {
  location = "nbg1"
  tags     = ["web"]
  secrets  = ["secrets/web/*.yaml"]
}

host "db1" {
  server_type = "cx32"
  tags        = ["db"]

  health_check "file_exists" {
    path = "/run/secrets/postgres-password"
  }
}

host "builder" {
  provider  = "owned"
  address   = "203.0.113.10"
  flake     = "github:example/fleet#builder"
  tags      = ["build"]
  installer = "https://example.org/nixos-kexec-installer-x86_64-linux.tar.gz"

  ssh {
    port = 2222
  }
}

host "testvm" {
  provider    = "local"
  disk_layout = "vm"
  memory      = "4G"
  disk_size   = "20G"
  tags        = ["test"]
}

admin "alice" {
  age = "age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2d"
}

admin "bob" {
  age = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPtRNRBdvs9DSZpJGTAQ76p6TbFNAqD9jLkaclZISGcR bob@laptop"
}

secrets "secrets/common/*.yaml" {
  tags = ["nixos"]
}

secrets "secrets/db/**" {
  hosts = ["db1"]
}

secrets "secrets/build.yaml" {
  hosts = ["builder"]
  tags  = ["test"]
}
