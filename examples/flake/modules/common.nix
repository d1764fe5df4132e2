# What every host of this fleet shares: how it boots, how it is reached, how it decrypts
# its secrets and how it keeps itself up to date.
{ config, lib, pkgs, self, ... }:
{
  # The disk layout in cairn.hcl ("cloud"): GPT with a BIOS boot partition, an ESP and a
  # root filesystem, all found by label so device names may change between boots.
  fileSystems."/" = {
    device = "/dev/disk/by-label/root";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };
  swapDevices = [ ];

  # Legacy BIOS (most cloud VMs and QEMU's SeaBIOS) and UEFI both boot: GRUB goes into the
  # BIOS boot partition and, as a removable EFI binary, onto the ESP.
  boot.loader.grub = {
    enable = true;
    device = "/dev/sda"; # the disk_layout device in cairn.hcl
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "ahci" "sd_mod" ];

  networking.useNetworkd = true;
  systemd.network.networks."10-uplink" = {
    matchConfig.Name = "en* eth*";
    networkConfig.DHCP = "yes";
  };

  # cairn seeds /etc/ssh/ssh_host_ed25519_key before the first boot and verifies that the
  # installed host presents it, so this key is known before anyone connects.
  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
    hostKeys = [{ path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; }];
  };
  users.users.root.openssh.authorizedKeys.keyFiles = [ ../keys/admin_ssh.pub ];

  # sops-nix decrypts with the host's SSH key (converted with ssh-to-age) and, if cairn was
  # asked for one, a separate age key; cairn writes both before the first boot.
  sops = {
    defaultSopsFile = ../secrets + "/${config.networking.hostName}.yaml";
    age.keyFile = "/var/lib/sops-nix/key.txt";
    age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
    secrets."comin/token" = { };
  };

  # comin pulls this repository and switches to the host's configuration; its token is a
  # sops secret, so it works from the first boot without anyone logging in.
  services.comin = {
    enable = true;
    remotes = [{
      name = "origin";
      url = "https://git.example.com/ops/fleet.git";
      auth.access_token_path = config.sops.secrets."comin/token".path;
      branches.main.name = "main";
    }];
  };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  system.stateVersion = "25.11";
}
