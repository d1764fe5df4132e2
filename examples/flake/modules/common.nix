# What every host of this fleet shares: how it boots, how it is reached, how it decrypts
# its secrets and how it keeps itself up to date.
{ config, lib, pkgs, self, ... }:
let
  # Written by `cairn gitops sync` from cairn.hcl's `gitops` and `ring` blocks: per host its
  # ring's branch, the remote, the sops file and key of the read token, and its machine id
  # once cairn has read it. A host in no ring is not in it.
  fleet = builtins.fromJSON (builtins.readFile ../cairn/fleet.json);
  me = fleet.hosts.${config.networking.hostName} or null;
  hasToken = me != null && me.token_sops_file != null;
in
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
  # Boot messages on the screen and on the serial port, where provider consoles (and
  # QEMU's -serial) show them; the last console is the one systemd writes to.
  boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];

  # cairn seeds /etc/ssh/ssh_host_ed25519_key before the first boot and verifies that the
  # installed host presents it, so this key is known before anyone connects.
  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
    hostKeys = [{ path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; }];
  };
  users.users.root.openssh.authorizedKeys.keyFiles = [ ../keys/admin_ssh.pub ];

  # sops-nix decrypts with the host's SSH key (converted with ssh-to-age), which cairn
  # writes before the first boot. Set `age.keyFile = "/var/lib/sops-nix/key.txt"` only for
  # hosts with `age_key = true` in cairn.hcl: sops-nix stops at a missing key file, and
  # cairn refuses to install a system that expects a key it does not seed.
  sops = {
    defaultSopsFile = ../secrets + "/${config.networking.hostName}.yaml";
    age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
    secrets."comin-token" = lib.mkIf hasToken {
      sopsFile = ../. + "/${me.token_sops_file}";
      key = me.token_sops_key;
    };
  };

  # comin pulls this repository and switches to the host's configuration, following its
  # ring's branch (`cairn promote` moves it); its token is a sops secret, so it works from
  # the first boot without anyone logging in. Option names as in comin's
  # nix/module-options.nix.
  services.comin = lib.mkIf (me != null) {
    enable = true;
    remotes = [{
      name = me.remote_name;
      url = me.remote_url;
      branches.main.name = me.branch;
      auth.access_token_path = lib.mkIf hasToken config.sops.secrets."comin-token".path;
    }];
    # comin deploys only where /etc/machine-id matches; null (not read yet) deploys anywhere.
    machineId = me.machine_id;
  };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  system.stateVersion = "25.11";
}
