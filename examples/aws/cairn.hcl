# Two NixOS hosts on AWS EC2. cairn starts stock instances from an AMI (any image that runs
# cloud-init and has a kernel with kexec, e.g. Debian 12), then kexecs them into its installer.
#
#   export AWS_ACCESS_KEY_ID=AKIA... AWS_SECRET_ACCESS_KEY=...
#   cairn plan && cairn apply && cairn bootstrap all
#
# The access key needs these EC2 permissions: RunInstances, DescribeInstances,
# TerminateInstances, Start/Stop/RebootInstances, CreateTags, ImportKeyPair, DescribeKeyPairs,
# CreateSecurityGroup, DescribeSecurityGroups, AuthorizeSecurityGroupIngress, DescribeVpcs and
# DescribeSubnets.

variable "region" {
  description = "AWS region (override: --var region=eu-west-1 or CAIRN_VAR_region)"
  default     = "eu-central-1"
}

provider "aws" "ec2" {
  region            = var.region
  access_key_id     = env("AWS_ACCESS_KEY_ID")
  secret_access_key = env("AWS_SECRET_ACCESS_KEY")
  # Default image for hosts that name none: an AMI id of the region above.
  ami = "ami-0abcdef1234567890"
  # Optional: a subnet (else the region's default VPC), the key pair name for your SSH key
  # (else cairn-<fingerprint>), the security group cairn opens SSH in (else cairn-ssh).
  # subnet_id      = "subnet-0123456789abcdef0"
  # key_name       = "alice"
  # security_group = "cairn-ssh"
}

defaults {
  size        = "t3.small"        # the instance type
  tags        = ["nixos", "aws"]
  disk_layout = "ebs"
}

disk_layout "ebs" {
  device = "/dev/nvme0n1"
  partition "bios" {
    type = "bios_boot"
    size = "1M"
  }
  partition "esp" {
    type = "esp"
    size = "512M"
  }
  partition "root" {
    type       = "filesystem"
    size       = "rest"
    filesystem = "ext4"
    label      = "root"
    mountpoint = "/"
  }
}

host "web1" {
  location = "${var.region}a"     # the availability zone
}

host "db1" {
  size     = "t3.medium"
  location = "${var.region}b"
}

admin "alice" {
  age = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
}
